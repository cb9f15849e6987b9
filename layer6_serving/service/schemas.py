"""The request and response bodies, as pydantic models: validation, OpenAPI docs and examples.

A bad field is a 422 whose body names it (``{"detail": [{"loc": ["body", "top_p"], "msg":
...}]}``) before any model runs. The bounds written here are the ones that do not depend on the
loaded model; those that do (``max_tokens`` within the GPT's context, ``steps`` within the
DDPM's timesteps, ``count`` within ``Settings.max_samples``) are checked by
:class:`~layer6_serving.service.core.ServingCore`, which raises :class:`FieldError` naming the
field, so the REST and gRPC front ends give the same answer. ``extra="forbid"``: a misspelt
field (``max_token``) is an error, not silently ignored.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from layer6_serving.service.images import from_array

MAX_TOKENS = 4096  # a static cap; the model's context is the real limit
MAX_STEPS = 1000
MAX_PROMPT_CHARS = 8000


class FieldError(ValueError):
    """A request field that is out of range for the model being served."""

    def __init__(self, field: str, message: str, value: Any = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.value = field, message, value

    def detail(self) -> list[dict[str, Any]]:
        """The error in FastAPI's 422 format."""
        return [{"type": "value_error", "loc": ["body", self.field], "msg": self.message,
                 "input": self.value}]  # fmt: skip


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GenerateRequest(_Strict):
    """Continue a prompt with the GPT."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"prompt": "Once upon a time", "max_tokens": 64,
                                         "temperature": 0.8, "top_k": 50, "seed": 0,
                                         "stream": True}]},
    )  # fmt: skip

    prompt: str = Field(max_length=MAX_PROMPT_CHARS, description="text to continue")
    max_tokens: int = Field(64, ge=1, le=MAX_TOKENS, description="tokens to generate, 1..context")
    temperature: float = Field(1.0, ge=0, le=100, description="0 = greedy")
    top_k: int | None = Field(None, ge=1, description="keep the k most likely tokens")
    top_p: float | None = Field(None, gt=0, le=1, description="nucleus: smallest set with mass p")
    seed: int | None = Field(None, ge=0, le=2**63 - 1, description="same seed, same text")
    stream: bool = Field(False, description="answer text/event-stream, one event per token")


class GenerateResponse(BaseModel):
    text: str
    tokens: int = Field(description="tokens generated")
    prompt_tokens: int
    model: str
    version: int
    seconds: float


class SampleRequest(_Strict):
    """Draw digits of one class from the DDPM (DDIM sampling)."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={"examples": [{"class": 7, "count": 4, "steps": 20, "seed": 0,
                                         "format": "png"}]},
    )  # fmt: skip

    label: int = Field(alias="class", ge=0, le=9, description="the digit, 0..9")
    count: int = Field(4, ge=1, description="digits to draw (at most Settings.max_samples)")
    steps: int = Field(20, ge=1, le=MAX_STEPS, description="DDIM steps, 1..timesteps")
    seed: int = Field(0, ge=0, le=2**63 - 1)
    format: Literal["png", "array"] = Field("png", description="a PNG grid or uint8 arrays")


class SampleArrayResponse(BaseModel):
    images: list[list[list[int]]] = Field(description="count × 28 × 28 uint8 pixels")
    label: int
    model: str
    version: int


class ClassifyArrayRequest(_Strict):
    """A CIFAR-10 image as numbers (the JSON alternative to a PNG/JPEG upload)."""

    model_config = ConfigDict(
        extra="forbid",
        arbitrary_types_allowed=True,
        json_schema_extra={"examples": [{"image": "[[[0.5, ...], ...], ...] (3, 32, 32)"}]},
    )

    image: Any = Field(description="(3, 32, 32) or (32, 32, 3); floats in [0, 1] or ints 0..255")

    @field_validator("image")
    @classmethod
    def _image(cls, value: Any) -> np.ndarray:
        return from_array(value)


class ClassifyResponse(BaseModel):
    label: int
    class_name: str
    probabilities: list[float]
    classes: list[str] = Field(description="the class names, in the order of probabilities")
    model: str
    version: int


class ModelInfo(BaseModel):
    kind: str
    version: int
    backend: str


class ReadyResponse(BaseModel):
    ready: bool
    backend: str
    models: dict[str, ModelInfo]
    errors: dict[str, str] = {}


class ReloadResponse(BaseModel):
    swapped: dict[str, list[int]] = Field(description="model -> [old version, new version]")
    unchanged: list[str]
    errors: dict[str, str] = {}
