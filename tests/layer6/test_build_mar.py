"""``build-mar`` packs the tiny registry's classifier; the archive's contents are checked (the
manifest torch-model-archiver writes, the handler, the model, the class names), and the model
inside gives the registry's TorchScript outputs."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from layer6_serving import runtime
from layer6_serving.__main__ import main
from layer6_serving.torchserve import handler


@pytest.fixture(scope="module")
def mar(tiny_registry, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model-store")
    assert main(["build-mar", "--registry", str(tiny_registry.root), "--out", str(out)]) == 0
    return out / "resnet.mar"


def test_archive_contents(mar, tiny_registry):
    with zipfile.ZipFile(mar) as z:
        names = set(z.namelist())
        manifest = json.loads(z.read("MAR-INF/MANIFEST.json"))
        assert z.read("handler.py") == Path(handler.__file__).read_bytes()
        classes = json.loads(z.read("index_to_name.json"))
        pre = json.loads(z.read("preprocessing.json"))
    assert {
        "MAR-INF/MANIFEST.json",
        "handler.py",
        "model.pt",
        "index_to_name.json",
        "preprocessing.json",
    } <= names
    model = manifest["model"]
    assert (model["modelName"], model["modelVersion"]) == ("resnet", "1")
    assert (model["serializedFile"], model["handler"]) == ("model.pt", "handler.py")
    assert [classes[str(i)] for i in range(10)] == runtime.load(tiny_registry, "resnet").classes
    assert (pre["image_size"], pre["channels"]) == (32, 3)
    assert not list(mar.parent.glob(".mar-build-*"))  # the temporary folder is gone


def test_model_inside_equals_the_registry(mar, tiny_registry, tmp_path):
    with zipfile.ZipFile(mar) as z:
        z.extract("model.pt", tmp_path)
    x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    with torch.inference_mode():
        logits = torch.jit.load(str(tmp_path / "model.pt"))(torch.from_numpy(x)).numpy()
    eager = runtime.load(tiny_registry, "resnet", backend="eager").logits(x)
    np.testing.assert_allclose(logits, eager, atol=1e-4)


def test_refuses_a_model_that_is_not_a_classifier(tiny_registry, tmp_path, capsys):
    args = [
        "build-mar",
        "--registry",
        str(tiny_registry.root),
        "--name",
        "gpt",
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 2
    assert "expected a classifier" in capsys.readouterr().err
    assert main(["build-mar", "--registry", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "no model 'resnet'" in capsys.readouterr().err
