"""Layer 7's deliverables, in run order: ``python -m layer7_research [--preset quick|full]``.

``lora_finetune`` (layer 4's GPT adapted to Shakespeare: full fine-tuning vs LoRA ranks 1-16 vs a
bottleneck adapter), ``dpo`` and ``rlhf`` (preference pairs from our GPT under a checkable rule;
DPO with β swept; a Bradley–Terry reward model and PPO; both judged by the same rule),
``quantization`` (int8 dynamic GPT, static and QAT ResNet, per-layer sensitivity),
``distillation`` (a small student taught by layer 4's ResNet over T and α), ``rag`` (BM25 and
BERT retrieval over TinyStories, recall@k, answers with and without the passage), ``tiny_clip``
(contrastive CIFAR-10 images and captions, zero-shot accuracy), ``guided_diffusion``
(classifier-free guidance swept 0-8 on the conditional DDPM), ``paper_grokking`` (Power et al.
2022 reproduced), ``experiment_template`` (the learner's experiment scaffold, worked example).
"""

from layer7_research.deliverables.distillation import distillation
from layer7_research.deliverables.dpo import dpo
from layer7_research.deliverables.experiment_template import experiment_template
from layer7_research.deliverables.guided_diffusion import guided_diffusion
from layer7_research.deliverables.lora_finetune import lora_finetune
from layer7_research.deliverables.paper_grokking import paper_grokking
from layer7_research.deliverables.quantization import quantization
from layer7_research.deliverables.rag import rag
from layer7_research.deliverables.rlhf import rlhf
from layer7_research.deliverables.tiny_clip import tiny_clip

__all__ = [
    "lora_finetune",
    "dpo",
    "rlhf",
    "quantization",
    "distillation",
    "rag",
    "tiny_clip",
    "guided_diffusion",
    "paper_grokking",
    "experiment_template",
]
