# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (dlstack)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Layer 4: a GPT from its parts, trained on Shakespeare
#
# A GPT is a stack of identical blocks, each `x + attention(norm(x))` then `x + mlp(norm(x))`,
# between a token embedding and a projection back to the vocabulary. Attention is causal: position
# `t` sees only positions `≤ t`, so one forward pass scores every next-token prediction of a
# sequence at once. `layer4_architectures.sequence` writes each part as its own module: a
# byte-level BPE tokenizer (`bpe.py`), rotary position embeddings (`rope.py`), RMSNorm and SwiGLU
# (`gpt.py`), a KV cache for generation (`attention.py`).
#
# Here: BPE learns merges from a paragraph, then a tiny GPT trains on the real tiny-shakespeare
# text for a few dozen steps and samples, and the KV cache is checked against the full forward.

# %%
import math
import os

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from layer0_math.datasets import load_tiny_shakespeare
from layer4_architectures.sequence.bpe import BPETokenizer
from layer4_architectures.sequence.gpt import GPT

SMALL = os.environ.get("DLSTACK_NOTEBOOK_SMALL") == "1"
STEPS, N_CHARS = (30, 100_000) if SMALL else (200, 400_000)
torch.set_num_threads(1)
torch.manual_seed(0)
text = load_tiny_shakespeare()
print(f"{len(text):,} characters; the first lines:\n{text[:120]}")

# %% [markdown]
# ## Byte-pair encoding on a paragraph
#
# BPE starts from the 256 byte values and repeatedly merges the most frequent adjacent pair into a
# new token. Words split by the GPT-2 pattern first (so merges never cross a space-word boundary).
# Every string stays encodable (bytes are the fallback), and decoding is exact.

# %%
paragraph = text[:2000]
tok = BPETokenizer.train(paragraph, vocab_size=256 + 64 + 1)  # 64 merges and <|endoftext|>
ids = tok.encode(paragraph)
print(
    f"{len(paragraph.encode())} bytes -> {len(ids)} tokens "
    f"({len(paragraph.encode()) / len(ids):.2f} bytes/token)"
)
print(
    "the first merges:",
    [tok.token_bytes(n).decode("utf-8", "replace") for _, _, n in tok.merges[:10]],
)
print(
    "'citizens' ->",
    [tok.token_bytes(i).decode("utf-8", "replace") for i in tok.encode(" citizens")],
)
assert tok.decode(ids) == paragraph  # lossless
assert len(ids) < 0.8 * len(paragraph.encode())  # and shorter than bytes

# %% [markdown]
# ## A tiny GPT learns characters
#
# For a fast demonstration the model reads characters (65 of them), with 2 layers, 4 heads,
# width 64 and a context of 64. The loss is the cross-entropy of each next character; an untrained
# model sits at `ln 65 ≈ 4.17` nats (uniform guessing), and a few dozen steps of AdamW already
# learn the character frequencies and common pairs.

# %%
chars = sorted(set(text))
stoi = {c: i for i, c in enumerate(chars)}
data = torch.tensor([stoi[c] for c in text[:N_CHARS]], dtype=torch.long)
block, batch = 64, 16
model = GPT(len(chars), block_size=block, n_layer=2, n_head=4, n_embd=64)
opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
gen = torch.Generator().manual_seed(0)

losses = []
for _step in range(STEPS):
    starts = torch.randint(0, len(data) - block - 1, (batch,), generator=gen)
    x = torch.stack([data[s : s + block] for s in starts])  # (B, T)
    y = torch.stack([data[s + 1 : s + block + 1] for s in starts])  # (B, T): shifted by one
    logits = model(x)  # (B, T, V)
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    losses.append(loss.item())
print(
    f"{model.num_params():,} parameters; loss {losses[0]:.3f} -> {np.mean(losses[-5:]):.3f} "
    f"(uniform: ln {len(chars)} = {math.log(len(chars)):.3f})"
)
assert abs(losses[0] - math.log(len(chars))) < 0.5 and np.mean(losses[-5:]) < losses[0] - 0.8

# %% [markdown]
# ## Sampling, and the KV cache
#
# Generation feeds the model its own output one token at a time. Recomputing attention over the
# whole prefix each time is wasteful: the cache keeps every layer's keys and values, so each new
# token costs one position. Greedy decoding with and without the cache must give the same tokens.

# %%
prompt = torch.tensor([[stoi[c] for c in "ROMEO:\n"]])
sample = model.generate(prompt, 120, temperature=0.8, top_k=20, seed=0)
print("".join(chars[i] for i in sample[0].tolist()))
cached = model.generate(prompt, 40, temperature=0.0, use_cache=True)
full = model.generate(prompt, 40, temperature=0.0, use_cache=False)
assert torch.equal(cached, full)
print("greedy tokens with and without the KV cache: identical")

# %%
fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(losses, label="training loss")
ax.axhline(
    math.log(len(chars)), color="grey", linestyle="--", label=f"uniform guess, ln {len(chars)}"
)
ax.set(
    title="tiny GPT on tiny shakespeare (characters)",
    xlabel="step",
    ylabel="cross-entropy (nats/char)",
)
ax.legend()
plt.show()

# %% [markdown]
# **What to take upward.** `python -m layer4_architectures` trains the real thing: a BPE GPT on
# tiny shakespeare through layer 3's Trainer, saved as a self-describing checkpoint that layer 6
# exports and serves and layer 7 fine-tunes with LoRA and aligns with DPO.
