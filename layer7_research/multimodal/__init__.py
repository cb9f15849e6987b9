"""Multimodality: a tiny CLIP (:mod:`.clip`: contrastive CIFAR-10 images and class captions,
symmetric InfoNCE with a learned temperature, zero-shot classification from text prompts)."""

from layer7_research.multimodal.clip import (
    CLIP,
    HELDOUT_TEMPLATES,
    TRAIN_TEMPLATES,
    CLIPTask,
    WordVocab,
    caption_table,
    class_embeddings,
    clip_loss,
    same_class_targets,
    zero_shot_predict,
)

__all__ = [
    "CLIP",
    "CLIPTask",
    "HELDOUT_TEMPLATES",
    "TRAIN_TEMPLATES",
    "WordVocab",
    "caption_table",
    "class_embeddings",
    "clip_loss",
    "same_class_targets",
    "zero_shot_predict",
]
