"""The model registry: atomic, concurrent-safe registration; names and paths that cannot escape."""

from __future__ import annotations

import json
import multiprocessing as mp
import threading
from pathlib import Path

import pytest

from layer6_serving.registry import DEFAULT_ROOT, ModelRegistry, RegistryError


def _writer(text: str = "weights"):
    def build(tmp: Path) -> dict:
        (tmp / "model.bin").write_text(text)
        return {"kind": "classifier", "files": {"eager": {"checkpoint": "model.bin"}}}

    return build


def test_register_numbers_versions_and_writes_the_manifest(tmp_path):
    reg = ModelRegistry(tmp_path / "reg")
    assert reg.names() == []
    assert reg.register("resnet", _writer("a")) == 1
    assert reg.register("resnet", _writer("b")) == 2
    assert reg.versions("resnet") == [1, 2] and reg.latest("resnet") == 2
    assert reg.names() == ["resnet"]
    man = reg.manifest("resnet")
    assert (man["name"], man["version"], man["kind"]) == ("resnet", 2, "classifier")
    assert "created" in man
    assert reg.path("resnet", 1) == (tmp_path / "reg" / "resnet" / "1").resolve()
    assert (reg.path("resnet", 1) / "model.bin").read_text() == "a"
    assert reg.file("resnet", 2, "model.bin").read_text() == "b"
    # the files of a version are exactly what build wrote, plus the manifest
    assert sorted(p.name for p in reg.path("resnet", 2).iterdir()) == ["manifest.json", "model.bin"]


def test_a_failing_build_leaves_no_version_and_no_temporary_folder(tmp_path):
    reg = ModelRegistry(tmp_path)

    def broken(tmp: Path) -> dict:
        (tmp / "half.bin").write_text("x")
        raise RuntimeError("export crashed")

    with pytest.raises(RuntimeError, match="export crashed"):
        reg.register("gpt", broken)
    assert reg.versions("gpt") == []
    assert list((tmp_path / "gpt").iterdir()) == []
    assert reg.register("gpt", _writer()) == 1


def test_half_written_versions_are_ignored_and_never_reused(tmp_path):
    reg = ModelRegistry(tmp_path)
    reg.register("ddpm", _writer())
    (tmp_path / "ddpm" / "2").mkdir()  # a crash after claiming 2, before the rename
    (tmp_path / "ddpm" / "2" / "model.bin").write_text("half")
    (tmp_path / "ddpm" / ".v.tmp-123-abcd").mkdir()  # a crash inside build
    assert reg.versions("ddpm") == [1] and reg.latest("ddpm") == 1
    with pytest.raises(RegistryError, match="no version 2"):
        reg.path("ddpm", 2)
    assert reg.register("ddpm", _writer()) == 3


def test_build_may_not_set_reserved_fields(tmp_path):
    reg = ModelRegistry(tmp_path)
    with pytest.raises(ValueError, match="version"):
        reg.register("gpt", lambda tmp: {"version": 7})
    with pytest.raises(TypeError, match="dict"):
        reg.register("gpt", lambda tmp: None)
    assert reg.versions("gpt") == []


def test_concurrent_registers_in_threads_get_distinct_versions(tmp_path):
    reg = ModelRegistry(tmp_path)
    got: list[int] = []
    barrier = threading.Barrier(8)

    def one(i: int) -> None:
        def build(tmp: Path) -> dict:
            barrier.wait()  # everyone claims at the same moment
            (tmp / "id").write_text(str(i))
            return {"kind": "classifier", "writer": i}

        got.append(reg.register("resnet", build))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 9))
    for v in range(1, 9):  # each folder holds its own writer's files and manifest
        writer = reg.manifest("resnet", v)["writer"]
        assert (reg.path("resnet", v) / "id").read_text() == str(writer)


def _register_in_process(root: str) -> int:
    return ModelRegistry(root).register("gpt", _writer())


def test_concurrent_registers_in_processes_get_distinct_versions(tmp_path):
    with mp.get_context("spawn").Pool(3) as pool:
        got = pool.map(_register_in_process, [str(tmp_path)] * 6)
    assert sorted(got) == list(range(1, 7))
    assert ModelRegistry(tmp_path).versions("gpt") == list(range(1, 7))


@pytest.mark.parametrize(
    "name", ["../x", "a/b", "/etc", "..", "", "Resnet", "x" * 65, ".hidden", "-a", "a b", None, 3]
)
def test_bad_names_are_refused_naming_the_value_and_the_rule(tmp_path, name):
    reg = ModelRegistry(tmp_path)
    for call in (reg.versions, reg.path, reg.manifest, reg.latest):
        with pytest.raises(RegistryError, match="invalid model name") as e:
            call(name)
        assert repr(name) in str(e.value) and "a-z" in str(e.value)
    with pytest.raises(RegistryError):
        reg.register(name, _writer())
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("version", [0, -1, True, "1", 1.0])
def test_bad_versions_are_refused(tmp_path, version):
    reg = ModelRegistry(tmp_path)
    reg.register("gpt", _writer())
    with pytest.raises(RegistryError, match="version"):
        reg.path("gpt", version)


def test_unknown_names_and_versions_say_what_exists(tmp_path):
    reg = ModelRegistry(tmp_path)
    reg.register("gpt", _writer())
    with pytest.raises(RegistryError, match=r"no model 'ddpm'.*\['gpt'\]"):
        reg.latest("ddpm")
    with pytest.raises(RegistryError, match=r"no version 5 \(it has: \[1\]\)"):
        reg.manifest("gpt", 5)


def test_symlinks_leaving_the_root_are_refused(tmp_path):
    outside = tmp_path / "outside"
    ModelRegistry(outside).register("evil", _writer("secret"))
    reg = ModelRegistry(tmp_path / "reg")
    reg.register("gpt", _writer())
    (reg.root / "evil").symlink_to(outside / "evil")  # a model folder pointing elsewhere
    (reg.root / "gpt" / "2").symlink_to(outside / "evil" / "1")  # a version pointing elsewhere
    with pytest.raises(RegistryError, match="outside the registry"):
        reg.manifest("evil", 1)
    with pytest.raises(RegistryError, match="outside the registry"):
        reg.path("gpt", 2)
    assert "evil" not in reg.names()


def test_manifest_file_entries_cannot_leave_the_version(tmp_path):
    reg = ModelRegistry(tmp_path / "reg")
    (tmp_path / "secret.txt").write_text("no")
    reg.register("gpt", _writer())
    reg.register("gpt", _writer())
    for bad in ["../../../secret.txt", "/etc/passwd", "", "../2/model.bin"]:
        with pytest.raises(RegistryError):
            reg.file("gpt", 1, bad)
    with pytest.raises(RegistryError, match="missing"):
        reg.file("gpt", 1, "absent.onnx")


def test_a_damaged_manifest_is_a_registry_error(tmp_path):
    reg = ModelRegistry(tmp_path)
    reg.register("gpt", _writer())
    (reg.path("gpt", 1) / "manifest.json").write_text("{not json")
    with pytest.raises(RegistryError, match="not a readable manifest"):
        reg.manifest("gpt", 1)
    (reg.path("gpt", 1) / "manifest.json").write_text(json.dumps([1, 2]))
    with pytest.raises(RegistryError, match="JSON object"):
        reg.manifest("gpt", 1)


def test_default_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DLSTACK_REGISTRY", str(tmp_path / "elsewhere"))
    assert DEFAULT_ROOT() == tmp_path / "elsewhere"
    monkeypatch.delenv("DLSTACK_REGISTRY")
    monkeypatch.setenv("DLSTACK_RUNS", str(tmp_path / "runs"))
    assert DEFAULT_ROOT() == tmp_path / "runs" / "registry"
