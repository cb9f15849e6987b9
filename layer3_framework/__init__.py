"""Layer 3: the PyTorch framework layer.

PyTorch ports of the scratch models, checked against them (:mod:`ports`), and the one training
pipeline every later layer uses: :mod:`device`, :mod:`data`, :mod:`trainer`, :mod:`checkpoint`,
:mod:`loggers`, :mod:`repro`, :mod:`metrics`, with Hydra configs (:mod:`train`, ``configs/``).
"""

from layer3_framework.checkpoint import (
    CheckpointError,
    ResumeError,
    latest_checkpoint,
    load_checkpoint,
    load_model,
    read_checkpoint,
    save_checkpoint,
)
from layer3_framework.data import (
    CharDataset,
    CharText,
    DataModule,
    ImageData,
    ImageDataset,
    ImageTransform,
    ResumableSampler,
    build_loader,
)
from layer3_framework.device import resolve_device
from layer3_framework.ema import EMA
from layer3_framework.loggers import (
    CompositeLogger,
    JsonlLogger,
    Logger,
    LoggerConfig,
    MlflowLogger,
    WandbLogger,
    build_logger,
    read_jsonl,
)
from layer3_framework.repro import rng_state, seed_everything, seed_worker, set_rng_state
from layer3_framework.task import Classification, Task
from layer3_framework.trainer import NonFiniteLossError, Trainer, TrainerConfig

__all__ = [
    "EMA",
    "CharDataset",
    "CharText",
    "CheckpointError",
    "Classification",
    "CompositeLogger",
    "DataModule",
    "ImageData",
    "ImageDataset",
    "ImageTransform",
    "JsonlLogger",
    "Logger",
    "LoggerConfig",
    "MlflowLogger",
    "NonFiniteLossError",
    "ResumableSampler",
    "ResumeError",
    "Task",
    "Trainer",
    "TrainerConfig",
    "WandbLogger",
    "build_loader",
    "build_logger",
    "latest_checkpoint",
    "load_checkpoint",
    "load_model",
    "read_checkpoint",
    "read_jsonl",
    "resolve_device",
    "rng_state",
    "save_checkpoint",
    "seed_everything",
    "seed_worker",
    "set_rng_state",
]
