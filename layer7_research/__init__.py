"""Layer 7: research. Frontier techniques applied to the models layers 4-6 trained, each checked
against its defining equation and measured; one paper reproduced; the learner's experiments.

- :mod:`~layer7_research.adaptation`: LoRA (W + (α/r)·B·A, B = 0 at start, base frozen) and
  bottleneck adapters, merged and unmerged, checked against the ``peft`` library.
- :mod:`~layer7_research.alignment`: preference pairs from our own GPT under a checkable rule, the
  DPO loss, a Bradley–Terry reward model, PPO (clipped objective, value head, GAE, KL penalty).
- :mod:`~layer7_research.efficient`: int8 quantisation (a quantiser from scratch checked against
  ``torch.ao.quantization``; dynamic, static, QAT) and knowledge distillation (Hinton's T²).
- :mod:`~layer7_research.retrieval`: BM25 from scratch, dense retrieval with BERT embeddings,
  retrieval-augmented generation; :mod:`~layer7_research.multimodal`: a tiny CLIP;
  classifier-free guidance on the conditional DDPM.
- :mod:`~layer7_research.grokking`: Power et al. 2022 reproduced (modular addition, AdamW with
  weight decay, delayed generalisation, Fourier features); :mod:`~layer7_research.experiments`:
  the scaffold for the learner's own experiments.

Base models arrive as artifacts (:mod:`~layer7_research.artifacts`: layer 4's self-describing
checkpoints in ``runs/``). ``python -m layer7_research`` (``make layer7``) runs the deliverables.
"""
