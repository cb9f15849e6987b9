"""The API key: where it comes from (env or a mounted secret file), how a request presents it,
and the constant-time check (the app-level 401s are in test_service.py)."""

from __future__ import annotations

import hmac
from unittest import mock

import pytest

from layer6_serving.service import security
from layer6_serving.service.security import check_key, is_public, load_api_key, presented_key


def test_key_from_env_or_from_a_secret_file(tmp_path):
    assert load_api_key({}) is None
    assert load_api_key({"DLSTACK_API_KEY": "abc"}) == "abc"
    secret = tmp_path / "key"
    secret.write_text("from-file\n")
    assert load_api_key({"DLSTACK_API_KEY_FILE": str(secret)}) == "from-file"


def test_bad_key_sources_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="not both"):
        load_api_key({"DLSTACK_API_KEY": "a", "DLSTACK_API_KEY_FILE": "/x"})
    missing = tmp_path / "absent"
    with pytest.raises(ValueError, match=f"DLSTACK_API_KEY_FILE='{missing}' cannot be read"):
        load_api_key({"DLSTACK_API_KEY_FILE": str(missing)})
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    with pytest.raises(ValueError, match="is empty"):
        load_api_key({"DLSTACK_API_KEY_FILE": str(empty)})


def test_presented_key_reads_both_headers():
    assert presented_key({"x-api-key": "k1"}) == "k1"
    assert presented_key({"authorization": "Bearer k2"}) == "k2"
    assert presented_key({"authorization": "bearer  k3 "}) == "k3"
    assert presented_key({"authorization": "Basic dXNlcjpwdw=="}) is None
    assert presented_key({"authorization": "Bearer "}) is None
    assert presented_key({}) is None


def test_check_key_outcomes_and_constant_time_compare():
    assert check_key(None, None) is None  # no key configured: open
    assert check_key("k", None) == "missing"
    assert check_key("k", "x") == "wrong"
    assert check_key("k", "k") is None
    assert check_key("ключ", "ключ") is None  # non-ASCII keys compare as UTF-8 bytes
    with mock.patch.object(security.hmac, "compare_digest", wraps=hmac.compare_digest) as cmp:
        assert check_key("secret", "secreT") == "wrong"
    cmp.assert_called_once_with(b"secreT", b"secret")


def test_public_paths():
    for path in ("/healthz", "/readyz", "/", "/docs", "/openapi.json", "/static/app.js"):
        assert is_public(path), path
    for path in ("/metrics", "/v1/generate", "/admin/reload", "/v1/drift", "/staticx"):
        assert not is_public(path), path
