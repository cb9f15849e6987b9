"""resolve_device: the preference order, overrides, and clear errors."""

import pytest
import torch

from layer3_framework import resolve_device


def test_default_prefers_cuda_then_mps_then_cpu():
    if torch.cuda.is_available():
        expected = "cuda"
    elif torch.backends.mps.is_available():
        expected = "mps"
    else:
        expected = "cpu"
    assert resolve_device(None).type == expected
    assert resolve_device("auto").type == expected


def test_explicit_cpu_overrides():
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("bad", ["tpu", "gpu", "cuda:x", "CPU"])
def test_unknown_name_is_a_clear_error(bad):
    with pytest.raises(ValueError, match=repr(bad).replace("'", ".")):
        resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_absent_cuda_is_an_error_not_a_fallback():
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        resolve_device("cuda")
