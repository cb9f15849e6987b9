"""The Fourier reading of a learned embedding (Nanda et al. 2023, §4).

Nanda et al. found that a Transformer trained on (a + b) mod p computes with waves: it embeds
each residue x as cos(2πkx/p), sin(2πkx/p) for a handful of *key frequencies* k and adds angles
(cos(w(a+b)) = cos wa cos wb − sin wa sin wb). The embedding W_E (p, d) then lives on few
frequencies, which a discrete Fourier transform over the token axis shows.

The unitary DFT over the p residues, and its real form::

    F[k, x] = e^{−2πi kx/p} / √p                 (p, p), F Fᴴ = I
    Ŵ = F W_E                                    (p, d), = numpy.fft.fft(W_E, axis=0, norm="ortho")
    B = [1/√p; √(2/p) cos(2πkx/p); √(2/p) sin(2πkx/p)]_{k=1…(p−1)/2}    (p, p), B Bᵀ = I

For real W_E, Ŵ[p−k] is the conjugate of Ŵ[k], so frequency k holds the energy of both rows::

    ‖W_E‖_k = √(‖Ŵ[k]‖² + ‖Ŵ[p−k]‖²)  (k ≥ 1),   ‖W_E‖_0 = ‖Ŵ[0]‖,   Σ_k ‖W_E‖_k² = ‖W_E‖_F²

(Parseval). ``top_fraction`` is the share of the squared Frobenius norm in the top-k non-constant
frequencies: about k/((p−1)/2) for a random init, near 1 after grokking.
"""

from __future__ import annotations

import numpy as np


def _check_odd(p: int) -> int:
    if isinstance(p, bool) or not isinstance(p, int) or p < 3 or p % 2 == 0:
        raise ValueError(f"p must be an odd integer >= 3 (a prime modulus), got {p!r}")
    return p


def dft_matrix(p: int) -> np.ndarray:
    """The unitary DFT F[k, x] = exp(−2πi kx/p)/√p, (p, p) complex."""
    _check_odd(p)
    k = np.arange(p)[:, None]  # (p, 1) frequencies
    x = np.arange(p)[None, :]  # (1, p) residues
    return np.exp(-2j * np.pi * ((k * x) % p) / p) / np.sqrt(p)


def fourier_basis(p: int) -> np.ndarray:
    """The real orthonormal basis (p, p): row 0 the constant, rows 2k−1, 2k cos and sin of k."""
    _check_odd(p)
    x = np.arange(p)
    rows = [np.full(p, 1.0 / np.sqrt(p))]
    for k in range(1, (p - 1) // 2 + 1):
        angle = 2 * np.pi * ((k * x) % p) / p
        rows += [np.sqrt(2.0 / p) * np.cos(angle), np.sqrt(2.0 / p) * np.sin(angle)]
    return np.stack(rows)


def spectrum(w: np.ndarray) -> np.ndarray:
    """Ŵ = F W over the token axis: w (p, d) real -> (p, d) complex."""
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"expected an embedding of shape (p, d), got {w.shape}")
    return dft_matrix(w.shape[0]) @ w


def frequency_norms(w: np.ndarray) -> np.ndarray:
    """‖W‖_k for k = 0 … (p−1)/2 (see the module docstring): (p+1)/2 values, Σ squares = ‖W‖_F²."""
    hat = spectrum(w)  # (p, d)
    p = hat.shape[0]
    row = np.sum(np.abs(hat) ** 2, axis=1)  # (p,) energy per DFT row
    half = (p - 1) // 2
    energy = np.concatenate([row[:1], row[1 : half + 1] + row[p - half :][::-1]])
    return np.sqrt(energy)


def key_frequencies(norms: np.ndarray, k: int) -> list[int]:
    """The k non-constant frequencies of largest norm, in decreasing order of norm."""
    norms = np.asarray(norms)
    if not 1 <= k < len(norms):
        raise ValueError(
            f"k must be in [1, {len(norms) - 1}] for {len(norms)} frequencies, got {k}"
        )
    order = np.argsort(-norms[1:], kind="stable") + 1  # skip frequency 0, the constant
    return [int(f) for f in order[:k]]


def top_fraction(norms: np.ndarray, freqs: list[int]) -> float:
    """The share of the squared norm Σ_k ‖W‖_k² held by the frequencies ``freqs``."""
    energy = np.asarray(norms, dtype=np.float64) ** 2
    return float(energy[list(freqs)].sum() / energy.sum())
