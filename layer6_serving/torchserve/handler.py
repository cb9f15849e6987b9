"""A TorchServe handler for the CIFAR-10 classifier: initialize → preprocess → inference →
postprocess.

TorchServe (a Java frontend that forwards requests to Python worker processes) loads a model
from a ``.mar`` archive (:mod:`~layer6_serving.torchserve.build_mar`) and calls, per batch of
requests, ``handle(data, context)``. Its ``BaseHandler`` splits that into four steps; this class
keeps the same steps and names:

1. ``initialize(context)``: once per worker. ``context.system_properties["model_dir"]`` is the
   unpacked archive; ``context.manifest["model"]["serializedFile"]`` names the TorchScript
   graph (the registry's ``model.pt``: pixels in [0, 1] → logits, the normalisation baked in);
   ``index_to_name.json`` (TorchServe's convention) holds the class names and
   ``preprocessing.json`` the image size and the upload limits.
2. ``preprocess(data)``: ``data`` holds one dict per request, the payload under ``"data"`` or
   ``"body"``: PNG/JPEG bytes, or JSON (already parsed by TorchServe) ``{"array": ...}`` or a
   bare nested list, (3, 32, 32) or (32, 32, 3), floats in [0, 1] or integers 0..255. Uploads are
   refused by byte count and by the pixel count their header declares *before* any decoding (a
   decompression bomb costs nothing). A bad request becomes an error row, not a failed batch.
3. ``inference(x)``: one forward pass over the good rows, (N, 3, 32, 32) → logits (N, 10).
4. ``postprocess``: softmax; one reply per request, in order: ``label``, ``class_name``,
   ``probabilities`` (the REST and gRPC replies' fields), or ``error`` with status 422 set on the
   context.

**Why it does not import dlstack.** The handler runs inside TorchServe's worker, whose Python
environment has torch, numpy and Pillow but not this repository; the archive carries only this
file and the model. So the decoding below is a standalone twin of
:mod:`layer6_serving.service.images` (same rules, same limits), and the tests check the two agree
and that the replies equal :meth:`layer6_serving.runtime.Classifier.predict`. It does not
subclass ``ts.torch_handler.base_handler.BaseHandler`` for the same reason (TorchServe accepts
any class with ``initialize`` and ``handle``: the module must define exactly one class).
"""

from __future__ import annotations

import io
import json
import os
import warnings
from typing import Any

import numpy as np
import torch
from PIL import Image

FORMATS = ("PNG", "JPEG")
DEFAULTS = {"image_size": 32, "channels": 3, "max_bytes": 1_000_000, "max_pixels": 1_000_000}


def _decode_bytes(data: bytes, size: int, max_bytes: int, max_pixels: int) -> np.ndarray:
    """PNG/JPEG bytes -> float32 (3, size, size) in [0, 1]; header checks before decoding."""
    if not data:
        raise ValueError("image: the upload is empty, expected a PNG or JPEG file")
    if len(data) > max_bytes:
        raise ValueError(f"image: the upload is {len(data)} bytes, over the limit of {max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))  # reads the header only
    except (OSError, Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise ValueError(f"image: not a readable PNG or JPEG ({type(e).__name__})") from None
    with img:
        w, h = img.size
        if img.format not in FORMATS:
            raise ValueError(f"image: a {img.format} file, expected one of {FORMATS}")
        if w * h > max_pixels:
            raise ValueError(f"image: declares {w}x{h} pixels, over the limit of {max_pixels}")
        if (w, h) != (size, size):
            raise ValueError(f"image: is {w}x{h}, expected {size}x{size}")
        try:
            rgb = img.convert("RGB")  # decodes
        except (OSError, ValueError) as e:
            raise ValueError(f"image: the data is corrupt ({e})") from None
    return (np.asarray(rgb, dtype=np.float32) / 255.0).transpose(2, 0, 1).copy()


def _from_array(value: Any, size: int) -> np.ndarray:
    """Nested lists (3, s, s) or (s, s, 3), floats in [0, 1] or ints 0..255 -> float32 (3, s, s)."""
    want = f"(3, {size}, {size}) or ({size}, {size}, 3)"
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):
        raise ValueError(f"array: ragged, expected a {want} array") from None
    if arr.shape == (size, size, 3):
        arr = arr.transpose(2, 0, 1)
    elif arr.shape != (3, size, size):
        raise ValueError(f"array: has shape {arr.shape}, expected {want}")
    if np.issubdtype(arr.dtype, np.integer):
        if arr.min() < 0 or arr.max() > 255:
            lo, hi = int(arr.min()), int(arr.max())
            raise ValueError(f"array: integer values span {lo}..{hi}, expected 0..255")
        return (arr.astype(np.float32) / 255.0).copy()
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"array: holds {arr.dtype} values, expected numbers")
    if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
        raise ValueError("array: float values must be finite and lie in [0, 1]")
    return arr.astype(np.float32).copy()


def _payload(request: Any) -> Any:
    """What one TorchServe request carries: the ``data`` or ``body`` entry (or the request)."""
    if isinstance(request, dict):
        for key in ("data", "body"):
            if request.get(key) is not None:
                return request[key]
        raise ValueError("request: no 'data' or 'body' entry, expected an image or an array")
    return request


def _read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class ClassifierHandler:
    """TorchServe's four steps for the registry's TorchScript classifier (see the module)."""

    def __init__(self) -> None:
        self.model: torch.jit.ScriptModule | None = None
        self.classes: list[str] = []
        self.config: dict[str, int] = dict(DEFAULTS)
        self.context: Any = None
        self.initialized = False

    def initialize(self, context: Any) -> None:
        """Load the graph, the class names and the limits from the unpacked archive."""
        self.context = context
        model_dir = context.system_properties["model_dir"]
        serialized = context.manifest["model"]["serializedFile"]
        self.model = torch.jit.load(os.path.join(model_dir, serialized), map_location="cpu")
        self.model.eval()
        names = _read_json(os.path.join(model_dir, "index_to_name.json"))
        self.classes = [names[str(i)] for i in range(len(names))]
        pre = os.path.join(model_dir, "preprocessing.json")
        if os.path.exists(pre):
            self.config.update({k: int(v) for k, v in _read_json(pre).items() if k in DEFAULTS})
        self.initialized = True

    def preprocess(self, data: list[Any]) -> tuple[torch.Tensor, list[str | None]]:
        """The good requests as one batch (N, 3, s, s) and, per request, its error or None."""
        size = self.config["image_size"]
        rows: list[np.ndarray] = []
        errors: list[str | None] = []
        for request in data:
            try:
                rows.append(self._one(_payload(request), size))
                errors.append(None)
            except ValueError as e:
                errors.append(str(e))
        batch = np.stack(rows) if rows else np.zeros((0, 3, size, size), np.float32)
        return torch.from_numpy(batch), errors

    def _one(self, payload: Any, size: int) -> np.ndarray:
        if isinstance(payload, (bytes, bytearray)):
            c = self.config
            return _decode_bytes(bytes(payload), size, c["max_bytes"], c["max_pixels"])
        if isinstance(payload, dict):
            if "array" not in payload:
                raise ValueError(f"request: JSON keys {sorted(payload)}, expected 'array'")
            payload = payload["array"]
        return _from_array(payload, size)

    def inference(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, classes) of pixels (N, 3, s, s) in [0, 1]."""
        if x.shape[0] == 0:
            return torch.zeros((0, len(self.classes)))
        with torch.inference_mode():
            return self.model(x)

    def postprocess(self, logits: torch.Tensor, errors: list[str | None]) -> list[dict]:
        """One reply per request, in order: the prediction, or the error (status 422)."""
        probs = torch.softmax(logits.float(), dim=-1).numpy()
        replies, good = [], iter(probs)
        for i, error in enumerate(errors):
            if error is not None:
                if hasattr(self.context, "set_response_status"):
                    self.context.set_response_status(422, error, i)
                replies.append({"error": error})
                continue
            p = next(good)
            label = int(p.argmax())
            replies.append(
                {
                    "label": label,
                    "class_name": self.classes[label],
                    "probabilities": [float(v) for v in p],
                }
            )
        return replies

    def handle(self, data: list[Any], context: Any) -> list[dict]:
        """What TorchServe calls per batch: preprocess → inference → postprocess."""
        if not self.initialized:
            self.initialize(context)
        self.context = context
        x, errors = self.preprocess(data)
        return self.postprocess(self.inference(x), errors)
