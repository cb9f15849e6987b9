"""Layer 4's deliverables, in run order: ``python -m layer4_architectures [--preset quick|full]``.

Sequence family: ``bpe_tokenizer``, ``gpt_tinystories`` (with bigram and LSTM baselines),
``gpt_shakespeare_char`` (nanoGPT's CPU reference run), ``bert_mlm``, ``attention_study``.
Generative family: ``feature_classifier`` (the MNIST classifier whose features the yardstick
uses), ``vae_mnist``, ``gan_mnist``, ``ddpm_mnist``, ``generative_comparison`` (reads the
others' artifacts).
Vision and routing: ``cifar_vision`` (ResNet, ConvNeXt, EfficientNet on CIFAR-10 under one
budget), ``moe_vs_dense`` (a Switch GPT against a dense one), ``architecture_study`` (depth and
width at fixed parameter budgets, a power-law fit).
"""

from layer4_architectures.deliverables.architecture_study import architecture_study
from layer4_architectures.deliverables.attention_study import attention_study
from layer4_architectures.deliverables.bert_mlm import bert_mlm
from layer4_architectures.deliverables.bpe_tokenizer import bpe_tokenizer
from layer4_architectures.deliverables.cifar_vision import cifar_vision
from layer4_architectures.deliverables.ddpm_mnist import ddpm_mnist
from layer4_architectures.deliverables.feature_classifier import feature_classifier
from layer4_architectures.deliverables.gan_mnist import gan_mnist
from layer4_architectures.deliverables.generative_comparison import generative_comparison
from layer4_architectures.deliverables.gpt_shakespeare_char import gpt_shakespeare_char
from layer4_architectures.deliverables.gpt_tinystories import gpt_tinystories
from layer4_architectures.deliverables.moe_vs_dense import moe_vs_dense
from layer4_architectures.deliverables.vae_mnist import vae_mnist

__all__ = [
    "bpe_tokenizer",
    "gpt_tinystories",
    "gpt_shakespeare_char",
    "bert_mlm",
    "attention_study",
    "feature_classifier",
    "vae_mnist",
    "gan_mnist",
    "ddpm_mnist",
    "generative_comparison",
    "cifar_vision",
    "moe_vs_dense",
    "architecture_study",
]
