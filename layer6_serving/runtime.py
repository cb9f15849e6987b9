"""One interface over three ways of running a registered model: ONNX Runtime, TorchScript, eager.

:func:`load` reads a version's manifest and returns the model for its ``kind``:

- :class:`Classifier` ``predict(images (N, 3, 32, 32) float32 in [0, 1]) -> probabilities
  (N, 10)``: the normalisation is inside the graph, the softmax here;
- :class:`Generator` ``encode``/``decode``, ``start``/``step`` (logits from a KV cache) and
  ``stream(prompt, ...)``: text pieces one token at a time, sampled by layer 4's
  ``sample_next`` (so a seed gives layer 4's ``GPT.generate`` tokens);
- :class:`Denoiser` ``sample(classes, steps, seed) -> uint8 digits (N, 28, 28)``: layer 4's DDIM
  loop (``Diffusion.sample``) run unchanged over any backend, through an ``nn.Module`` adapter
  whose forward calls the exported graph.

Arrays in and out are numpy; every call checks shapes, dtypes and ranges and raises ValueError
naming the argument, the value and what was expected (the service turns those into HTTP 422).

**Backends.** ``onnx`` (and ``onnx-int8`` where the exporter registered a quantised graph):
an ``onnxruntime.InferenceSession`` per graph with ``intra_op_num_threads = threads``; its
``run`` is thread-safe, so one loaded model serves concurrent requests. ``torchscript``:
``torch.jit.load`` of the traced wrappers. ``eager``: the layer-3 checkpoint each version carries,
rebuilt by ``load_model``; for the GPT that is layer 4's own forward with its ``KVCache``, the
reference the exported graphs are checked against.

**Generation with a cache.** ``start(ids)`` runs the prompt once and returns the logits of the
next token and a state holding every layer's keys and values; ``step(tokens, state)`` feeds one
token per row and returns the next logits and the extended state, at O(T) instead of O(T²) per
token. When the context (block_size) is full, ``stream`` does what ``GPT._decode`` does: it
re-runs the last block_size tokens for every further token (no cache), so its tokens equal
layer 4's in that regime too.
"""

from __future__ import annotations

import codecs
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from layer0_math.numerics import softmax
from layer3_framework.checkpoint import load_model
from layer4_architectures.generative.diffusion import Diffusion, NoiseSchedule, to_unit
from layer4_architectures.sequence.data import load_tokenizer
from layer4_architectures.sequence.sampling import sample_next
from layer6_serving.export.wrappers import ClassifierGraph
from layer6_serving.registry import ModelRegistry, RegistryError

BACKENDS = ("onnx", "torchscript", "eager")
QUANTIZED = "onnx-int8"  # registered beside onnx where the exporter quantised the model
KINDS = ("generator", "denoiser", "classifier")


# ----------------------------------------------------------------------------- graphs


class Graph:
    """A function of numpy arrays, positional in and out, whoever executes it."""

    def __call__(self, *inputs: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError


class OnnxGraph(Graph):
    """An ONNX Runtime session (CPU), ``threads`` intra-op threads, one inter-op thread."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.names = [i.name for i in self.session.get_inputs()]

    def __call__(self, *inputs: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, dict(zip(self.names, inputs, strict=True)))


class TorchGraph(Graph):
    """A torch module (eager or TorchScript) run under ``inference_mode``."""

    def __init__(self, module: Callable[..., Any]) -> None:
        self.module = module

    def __call__(self, *inputs: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            out = self.module(*(torch.from_numpy(np.ascontiguousarray(a)) for a in inputs))
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return [o.numpy() for o in outs]


def torchscript_graph(path: Path) -> TorchGraph:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is in maintenance
        module = torch.jit.load(str(path), map_location="cpu")
    return TorchGraph(module.eval())


def _graphs(
    registry: ModelRegistry, name: str, version: int, backend: str, files: dict, threads: int
) -> dict[str, Graph]:
    """The backend's graphs of a version (``{"model": ...}`` or ``{"prefill", "step"}``)."""
    out: dict[str, Graph] = {}
    for role, rel in files.items():
        path = registry.file(name, version, rel)
        out[role] = (
            OnnxGraph(path, threads) if backend.startswith("onnx") else torchscript_graph(path)
        )
    return out


# ----------------------------------------------------------------------------- checks


def _array(value: Any, what: str, ndim: int) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{what} must be a numpy array, got {type(value).__name__}")
    if value.ndim != ndim:
        raise ValueError(f"{what} must have {ndim} dimensions, got shape {value.shape}")
    if value.shape[0] < 1:
        raise ValueError(f"{what} is empty (shape {value.shape})")
    return value


def _token_ids(value: Any, what: str, ndim: int, vocab_size: int) -> np.ndarray:
    ids = _array(value, what, ndim)
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{what} must hold integer token ids, got dtype {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(
            f"{what} holds ids in [{ids.min()}, {ids.max()}], expected 0..{vocab_size - 1}"
        )
    return ids.astype(np.int64)


def check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """ValueError unless temperature >= 0, top_k >= 1 (or None), 0 < top_p <= 1 (or None)."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
    if not temperature >= 0 or not np.isfinite(temperature):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be an integer >= 1 (or None), got {top_k!r}")
    if top_p is not None and (
        isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1
    ):
        raise ValueError(f"top_p must be in (0, 1] (or None), got {top_p!r}")


# ----------------------------------------------------------------------------- models


@dataclass(eq=False)  # loaded models compare (and hash) by identity
class Served:
    """What every loaded model says about itself."""

    name: str
    version: int
    backend: str
    manifest: dict[str, Any]


class Classifier(Served):
    """An image classifier: pixels in [0, 1] -> class probabilities."""

    def __init__(self, info: Served, graph: Graph) -> None:
        super().__init__(info.name, info.version, info.backend, info.manifest)
        pre = info.manifest["preprocessing"]
        self.classes: list[str] = list(pre["classes"])
        self.channels, self.image_size = int(pre["shape"][0]), int(pre["shape"][1])
        self.graph = graph

    def check(self, images: Any) -> np.ndarray:
        """``images`` as float32 (N, C, H, W) in [0, 1] (uint8 0..255 is scaled), or ValueError."""
        x = _array(images, "images", 4)
        want = (self.channels, self.image_size, self.image_size)
        if x.shape[1:] != want:
            raise ValueError(
                f"images must have shape (N, {', '.join(map(str, want))}), got {x.shape}"
            )
        if x.dtype == np.uint8:
            return x.astype(np.float32) / 255
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"images must be float32 in [0, 1] or uint8, got dtype {x.dtype}")
        if not np.isfinite(x).all():
            raise ValueError("images must lie in [0, 1], got NaN or inf values")
        if x.min() < 0 or x.max() > 1:
            raise ValueError(f"images must lie in [0, 1], got values in [{x.min()}, {x.max()}]")
        return x.astype(np.float32)

    def logits(self, images: np.ndarray) -> np.ndarray:
        return self.graph(self.check(images))[0]

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Probabilities float32 (N, classes)."""
        return softmax(self.logits(images)).astype(np.float32)


@dataclass
class KVState:
    """Keys and values of every layer for ``length`` positions (backend-specific ``data``)."""

    length: int
    batch: int
    data: Any


class GraphDecoder:
    """prefill/step over exported graphs; the state is (K, V) arrays (L, B, H, P, d)."""

    def __init__(self, prefill: Graph, step: Graph) -> None:
        self.prefill_graph, self.step_graph = prefill, step

    def prefill(self, ids: np.ndarray) -> tuple[np.ndarray, KVState]:
        logits, k, v = self.prefill_graph(ids, np.arange(ids.shape[1], dtype=np.int64))
        return logits, KVState(ids.shape[1], ids.shape[0], (k, v))

    def step(self, tokens: np.ndarray, state: KVState) -> tuple[np.ndarray, KVState]:
        k, v = state.data
        pos = np.array([state.length], dtype=np.int64)
        logits, k, v = self.step_graph(tokens[:, None], pos, k, v)
        return logits, KVState(state.length + 1, state.batch, (k, v))


class EagerDecoder:
    """prefill/step with layer 4's GPT and its preallocated KVCache (mutated: the state passed
    to ``step`` is consumed)."""

    def __init__(self, gpt: nn.Module) -> None:
        self.gpt = gpt

    def prefill(self, ids: np.ndarray) -> tuple[np.ndarray, KVState]:
        cache = self.gpt.new_cache(ids.shape[0])
        with torch.inference_mode():
            logits = self.gpt(torch.from_numpy(ids), cache)[:, -1]
        return logits.numpy(), KVState(ids.shape[1], ids.shape[0], cache)

    def step(self, tokens: np.ndarray, state: KVState) -> tuple[np.ndarray, KVState]:
        with torch.inference_mode():
            logits = self.gpt(torch.from_numpy(tokens[:, None]), state.data)[:, -1]
        return logits.numpy(), KVState(state.length + 1, state.batch, state.data)


class Generator(Served):
    """A language model with its tokenizer: KV-cached ``start``/``step`` and ``stream``."""

    def __init__(self, info: Served, decoder: GraphDecoder | EagerDecoder) -> None:
        super().__init__(info.name, info.version, info.backend, info.manifest)
        pre = info.manifest["preprocessing"]
        self.tokenizer = load_tokenizer(pre)
        self.context: int = int(pre["block_size"])
        self.vocab_size: int = int(self.tokenizer.vocab_size)
        self.eos_id: int | None = self.tokenizer.eot_id
        self.decoder = decoder

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (special-token strings typed by a user stay plain text)."""
        if not isinstance(text, str):
            raise ValueError(f"text must be a string, got {type(text).__name__}")
        return list(getattr(self.tokenizer, "encode_ordinary", self.tokenizer.encode)(text))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), errors="replace")

    def start(self, ids: np.ndarray) -> tuple[np.ndarray, KVState]:
        """ids (B, T) int64, 1 <= T <= context -> logits of the next token (B, V), state."""
        ids = _token_ids(ids, "ids", 2, self.vocab_size)
        if not 1 <= ids.shape[1] <= self.context:
            raise ValueError(
                f"ids has length {ids.shape[1]}, expected 1..{self.context} (the model's context)"
            )
        return self.decoder.prefill(ids)

    def step(self, tokens: np.ndarray, state: KVState) -> tuple[np.ndarray, KVState]:
        """tokens (B,) int64, one per row of the state -> logits (B, V), the state one longer."""
        tokens = _token_ids(tokens, "tokens", 1, self.vocab_size)
        if not isinstance(state, KVState):
            raise ValueError(f"state must be what start/step returned, got {type(state).__name__}")
        if tokens.shape[0] != state.batch:
            raise ValueError(f"tokens has {tokens.shape[0]} rows but the state holds {state.batch}")
        if state.length >= self.context:
            raise ValueError(
                f"the cache holds {state.length} positions, the whole context ({self.context}): "
                "start again from the last context tokens"
            )
        return self.decoder.step(tokens, state)

    def tokens(
        self,
        ids: Sequence[int],
        max_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
    ) -> Iterator[int]:
        """The sampled continuation of prompt ``ids``, one id at a time (stops after eos).
        The arguments are checked now, before the first token is asked for."""
        self._check_request(ids, max_tokens, temperature, top_k, top_p)
        g = None if seed is None else torch.Generator().manual_seed(int(seed))
        return self._sample(
            list(ids), max_tokens, lambda z: sample_next(z, temperature, top_k, top_p, g)
        )

    def _sample(self, out: list[int], max_tokens: int, pick: Callable) -> Iterator[int]:
        logits, state = self.start(np.asarray([out], dtype=np.int64))
        for i in range(max_tokens):
            nxt = int(pick(torch.from_numpy(logits))[0])
            yield nxt
            out.append(nxt)
            if nxt == self.eos_id or i == max_tokens - 1:
                return
            if state is not None and state.length < self.context:
                logits, state = self.step(np.array([nxt], dtype=np.int64), state)
            else:  # context full: re-run the last block_size tokens (GPT._decode's fallback)
                logits, _ = self.start(np.asarray([out[-self.context :]], dtype=np.int64))
                state = None

    def _check_request(self, ids, max_tokens, temperature, top_k, top_p) -> None:
        check_sampling(temperature, top_k, top_p)
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens must be an integer >= 1, got {max_tokens!r}")
        if not 1 <= len(ids) <= self.context:
            raise ValueError(
                f"the prompt is {len(ids)} tokens, expected 1..{self.context} (the context)"
            )

    def stream(
        self,
        prompt: str,
        max_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
    ) -> Iterator[str]:
        """The continuation of ``prompt`` as text, one piece per generated token (an empty
        piece while a multi-byte character is incomplete); an empty prompt starts from eos.
        The arguments are checked now (ValueError), before the first piece is asked for."""
        ids = self.encode(prompt)
        if not ids and self.eos_id is not None:
            ids = [self.eos_id]
        return self._pieces(self.tokens(ids, max_tokens, temperature, top_k, top_p, seed))

    def _pieces(self, tokens: Iterator[int]) -> Iterator[str]:
        """Exactly one text piece per generated token. A token may end inside a multi-byte UTF-8
        character: its piece is held until the next token completes it, and the last one is
        flushed with the decoder's tail (U+FFFD for bytes no token completed)."""
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        held: str | None = None
        for t in tokens:
            if t == self.eos_id:
                break
            if held is not None:
                yield held
                held = None
            piece = utf8.decode(self.tokenizer.token_bytes(t))
            if utf8.getstate()[0]:  # bytes of an unfinished character wait in the decoder
                held = piece
            else:
                yield piece
        if held is not None:
            yield held + utf8.decode(b"", final=True)


class _GraphEps(nn.Module):
    """An ε_θ(x, t, y) module for layer 4's ``Diffusion`` whose forward runs an exported graph."""

    def __init__(self, graph: Graph, config: Any) -> None:
        super().__init__()
        self.graph, self.config = graph, config
        # Diffusion reads the device from the first parameter; this module has no weights
        self.anchor = nn.Parameter(torch.empty(0), requires_grad=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if y is None:
            y = torch.full_like(t, self.config.num_classes)
        (eps,) = self.graph(x.float().numpy(), t.long().numpy(), y.long().numpy())
        return torch.from_numpy(eps)


@dataclass
class _UNetFacts:
    """The fields of ``UNetConfig`` that ``Diffusion`` reads."""

    in_channels: int
    image_size: int
    num_classes: int
    schedule: str
    timesteps: int


class Denoiser(Served):
    """A class-conditional DDPM: ``sample`` draws digits with DDIM."""

    def __init__(self, info: Served, diffusion: Diffusion) -> None:
        super().__init__(info.name, info.version, info.backend, info.manifest)
        self.diffusion = diffusion
        self.num_classes: int = diffusion.num_classes
        self.image_size: int = diffusion.shape[-1]
        self.timesteps: int = diffusion.schedule.timesteps

    def sample(self, classes: Sequence[int], steps: int, seed: int) -> np.ndarray:
        """One uint8 image (N, H, W) per entry of ``classes`` (each in 0..num_classes-1), drawn
        by deterministic DDIM (η = 0) with ``steps`` steps in 1..timesteps from ``seed``."""
        if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence) or not classes:
            raise ValueError(f"classes must be a non-empty list of class ids, got {classes!r}")
        for c in classes:
            if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
                raise ValueError(f"classes must hold integers, got {c!r}")
        if (
            isinstance(steps, bool)
            or not isinstance(steps, int)
            or not 1 <= steps <= self.timesteps
        ):
            raise ValueError(f"steps must be an integer in 1..{self.timesteps}, got {steps!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        x, _ = self.diffusion.sample(
            len(classes), sampler="ddim", steps=steps, classes=[int(c) for c in classes], seed=seed
        )
        pixels = to_unit(x)[:, 0].numpy()  # (N, H, W) in [0, 1]
        return np.round(pixels * 255).astype(np.uint8)


# ----------------------------------------------------------------------------- loading


def _eager_model(registry: ModelRegistry, name: str, version: int, files: dict) -> nn.Module:
    return load_model(registry.file(name, version, files["checkpoint"]))


def _classifier(registry, info: Served, files: dict, threads: int) -> Classifier:
    if info.backend == "eager":
        pre = info.manifest["preprocessing"]
        model = _eager_model(registry, info.name, info.version, files)
        graph: Graph = TorchGraph(
            ClassifierGraph(model, pre["mean"], pre["std"], pre.get("flip_tta", False)).eval()
        )
    else:
        graph = _graphs(registry, info.name, info.version, info.backend, files, threads)["model"]
    return Classifier(info, graph)


def _generator(registry, info: Served, files: dict, threads: int) -> Generator:
    if info.backend == "eager":
        return Generator(info, EagerDecoder(_eager_model(registry, info.name, info.version, files)))
    g = _graphs(registry, info.name, info.version, info.backend, files, threads)
    return Generator(info, GraphDecoder(g["prefill"], g["step"]))


def _denoiser(registry, info: Served, files: dict, threads: int) -> Denoiser:
    pre = info.manifest["preprocessing"]
    schedule = NoiseSchedule.make(pre["schedule"], int(pre["timesteps"]))
    if info.backend == "eager":
        return Denoiser(
            info, Diffusion(_eager_model(registry, info.name, info.version, files), schedule)
        )
    graph = _graphs(registry, info.name, info.version, info.backend, files, threads)["model"]
    facts = _UNetFacts(
        int(pre["in_channels"]),
        int(pre["image_size"]),
        int(pre["num_classes"]),
        pre["schedule"],
        int(pre["timesteps"]),
    )
    return Denoiser(info, Diffusion(_GraphEps(graph, facts), schedule))


_LOADERS = {"classifier": _classifier, "generator": _generator, "denoiser": _denoiser}


def load(
    registry: ModelRegistry,
    name: str,
    version: int | None = None,
    backend: str = "onnx",
    threads: int = 1,
) -> Classifier | Generator | Denoiser:
    """The model ``name`` (version ``None``: the latest) of the registry, run by ``backend``."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
    version = registry.latest(name) if version is None else version
    manifest = registry.manifest(name, version)
    kind = manifest.get("kind")
    if kind not in _LOADERS:
        raise RegistryError(f"{name} v{version} has kind {kind!r}, expected one of {KINDS}")
    files = manifest.get("files", {})
    if backend not in files:
        raise ValueError(
            f"backend {backend!r} is not available for {name} v{version}: it has "
            f"{sorted(files)} (backends: {BACKENDS + (QUANTIZED,)})"
        )
    info = Served(name, version, backend, manifest)
    return _LOADERS[kind](registry, info, files[backend], threads)
