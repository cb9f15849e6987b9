"""The sequence family: tokenisation, positional encodings, attention, GPT and BERT.

One concept per module: :mod:`.bpe` (byte-level BPE), :mod:`.rope` (rotary embeddings),
:mod:`.attention` (causal self-attention and its KV cache), :mod:`.gpt` (the decoder),
:mod:`.sampling` (greedy, temperature, top-k, top-p), :mod:`.flops` (parameters, FLOPs, MFU),
:mod:`.data` (token streams as memory-mapped uint16), :mod:`.baselines` (bigram and LSTM
language models), :mod:`.bert` (the encoder and masked-language modelling).
"""
