"""The TorchServe handler, driven the way TorchServe drives it (a context with
``system_properties`` and ``manifest``, a batch of request dicts) without the Java server, and
checked against ``Classifier.predict`` and the service's own decoder."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from layer6_serving import runtime
from layer6_serving.service.images import decode_upload
from layer6_serving.torchserve.handler import ClassifierHandler


class FakeContext:
    """What TorchServe passes: the unpacked archive's folder, its manifest, response status."""

    def __init__(self, model_dir, serialized="model.pt") -> None:
        self.system_properties = {"model_dir": str(model_dir), "gpu_id": None}
        self.manifest = {"model": {"serializedFile": serialized, "modelName": "resnet"}}
        self.statuses = {}

    def set_response_status(self, code, phrase, idx=0):
        self.statuses[idx] = (code, phrase)


@pytest.fixture(scope="module")
def model_dir(tiny_registry, tmp_path_factory):
    """A folder laid out like an unpacked .mar of the tiny resnet."""
    folder = tmp_path_factory.mktemp("mar")
    manifest = tiny_registry.manifest("resnet")
    graph = tiny_registry.file("resnet", 1, manifest["files"]["torchscript"]["model"])
    shutil.copyfile(graph, folder / "model.pt")
    classes = manifest["preprocessing"]["classes"]
    (folder / "index_to_name.json").write_text(json.dumps(dict(enumerate(classes))))
    (folder / "preprocessing.json").write_text(json.dumps({"image_size": 32, "max_pixels": 4096}))
    return folder


def _png(pixels, fmt="PNG"):
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def test_batch_equals_predict_in_order(tiny_registry, model_dir):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    x = (pixels.astype(np.float32) / 255).transpose(0, 3, 1, 2)
    jpeg = _png(pixels[2], "JPEG")
    data = [
        {"data": _png(pixels[0])},  # a file upload
        {"body": bytearray(_png(pixels[1]))},  # a raw body
        {"body": {"array": x[1].tolist()}},  # JSON, parsed by TorchServe
        {"data": jpeg},
        {"body": pixels[0].tolist()},  # a bare (32, 32, 3) uint8 list
    ]
    handler = ClassifierHandler()
    context = FakeContext(model_dir)
    replies = handler.handle(data, context)
    clf = runtime.load(tiny_registry, "resnet", backend="eager")
    jpeg_x = decode_upload(jpeg, max_bytes=10**6, max_pixels=10**6)[None]  # the service's decoder
    expected = clf.predict(np.concatenate([x[:2], x[1:2], jpeg_x, x[:1]]))
    assert len(replies) == len(data) and context.statuses == {}
    for reply, p in zip(replies, expected, strict=True):
        np.testing.assert_allclose(reply["probabilities"], p, atol=1e-5)
        assert reply["label"] == int(p.argmax())
        assert reply["class_name"] == clf.classes[reply["label"]]


def test_bad_requests_become_error_rows_with_422(model_dir):
    big = _png(np.zeros((80, 80, 3), np.uint8))  # 6400 pixels > the archive's limit 4096
    data = [
        {"data": b"definitely not a png"},
        {"data": _png(np.zeros((32, 32, 3), np.uint8))},
        {"data": big},
        {"body": {"array": [[0.5] * 32] * 32}},
        {"body": {"pixels": []}},
        {"other": 1},
        {"data": _png(np.zeros((16, 16, 3), np.uint8))},
    ]
    handler = ClassifierHandler()
    context = FakeContext(model_dir)
    replies = handler.handle(data, context)
    assert "label" in replies[1] and 1 not in context.statuses
    words = {
        0: "not a readable",
        2: "over the limit of 4096",
        3: "shape",
        4: "'array'",
        5: "no 'data' or 'body'",
        6: "16x16",
    }
    for i, word in words.items():
        assert word in replies[i]["error"], (i, replies[i])
        assert context.statuses[i][0] == 422 and word in context.statuses[i][1]


def test_only_errors_still_answers_every_request(model_dir):
    handler = ClassifierHandler()
    replies = handler.handle([{"data": b""}], FakeContext(model_dir))
    assert replies == [{"error": "image: the upload is empty, expected a PNG or JPEG file"}]


def test_the_module_defines_exactly_one_class():
    """TorchServe instantiates the one class a handler module defines."""
    import inspect

    from layer6_serving.torchserve import handler

    classes = [
        c
        for _, c in inspect.getmembers(handler, inspect.isclass)
        if c.__module__ == handler.__name__
    ]
    assert classes == [ClassifierHandler]
