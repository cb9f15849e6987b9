"""Layer 4: the architectures of modern deep learning, in PyTorch on layer 3's platform.

- :mod:`~layer4_architectures.sequence`: a byte-level BPE tokenizer, GPT (RoPE, RMSNorm, SwiGLU,
  KV cache, sampling), BERT (masked-language-model pre-training), and what attention buys.
- :mod:`~layer4_architectures.generative`: DDPM (U-Net, DDPM and DDIM samplers), a VAE and a
  DCGAN on MNIST, judged by one yardstick (FID/KID on a classifier's features).

Every model trains through layer 3's one trainer (a task per model), is configured by Hydra
(``configs/``) and is saved as a self-describing checkpoint that ``load_model`` rebuilds with no
dataset on disk. ``python -m layer4_architectures`` (``make layer4``) runs the deliverables.
"""
