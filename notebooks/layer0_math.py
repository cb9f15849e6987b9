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
# # Layer 0: why gradient descent is slow, and how one line of preprocessing fixes it
#
# Everything above this layer is linear algebra, calculus and floating point. This notebook
# follows one idea from `layer0_math` end to end: **gradient descent on a least-squares problem
# converges at a rate set by the condition number κ**, and standardising the features shrinks κ.
#
# For `f(w) = 1/(2n) ‖Xw − y‖²` the Hessian is `H = XᵀX / n`, with eigenvalues `μ ≤ … ≤ L`.
# Gradient descent with step `1/L` multiplies the error along the slowest eigen-direction by
# `1 − μ/L = 1 − 1/κ` at every step, so it needs about `κ · ln(1/tol)` steps.
#
# Run this notebook from the repository's virtual environment. `SMALL` (set by the tests) makes
# every run shorter.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from layer0_math import condition_number, lstsq_qr, measured_rate, softmax
from layer0_math.datasets import DIABETES_FEATURES, load_diabetes
from layer0_math.optimization import LeastSquares, Standardizer, gd_least_squares

SMALL = os.environ.get("DLSTACK_NOTEBOOK_SMALL") == "1"
STEPS = 1000 if SMALL else 5000

# %% [markdown]
# ## First, floating point: the reason for every "stable" formula
#
# `exp(1000)` overflows float64 (largest finite ≈ 1.8e308), so a softmax written as
# `exp(x) / Σ exp(x)` returns `nan` on large logits. Layer 0's `softmax` subtracts the maximum
# first, `exp(x − m) / Σ exp(x − m)`, which is the same number mathematically and never
# overflows. The check: shifting every logit by a constant must not change the answer.

# %%
logits = np.array([1000.0, 1001.0, 1002.0])
with np.errstate(over="ignore", invalid="ignore"):
    naive = np.exp(logits) / np.exp(logits).sum()
ours = softmax(logits)
print("naive :", naive)
print("ours  :", ours)
assert np.isnan(naive).all()
assert np.allclose(ours, softmax(logits - 1000.0), rtol=0, atol=1e-15)  # shift-invariant

# %% [markdown]
# ## Least squares on real data
#
# scikit-learn's diabetes data: 442 patients, 10 features in their raw units (age in years,
# blood pressure in mm Hg, serum measurements in mg/dL...), a disease-progression score to
# predict. The design matrix gets a column of ones for the intercept.
#
# Layer 0 solves least squares with its own Householder QR (`lstsq_qr`): `X = QR`, then
# `R w = Qᵀy` by back substitution. We check it against numpy's LAPACK solver.

# %%
x_raw, y = load_diabetes(scaled=False)
raw = np.column_stack([np.ones(len(x_raw)), x_raw])  # (442, 11)
w_qr = lstsq_qr(raw, y)
w_ref = np.linalg.lstsq(raw, y, rcond=None)[0]
print("features:", ", ".join(DIABETES_FEATURES))
print(f"max |w_qr - w_numpy| = {np.abs(w_qr - w_ref).max():.2e}")
assert np.allclose(w_qr, w_ref, rtol=1e-9, atol=1e-9)

# %% [markdown]
# ## The condition number predicts the rate
#
# κ(XᵀX) = κ(X)²: forming the Gram matrix squares the condition number (which is also why the
# normal equations lose twice the digits QR loses). We run gradient descent with step `1/L` on the
# raw design and on the standardised one (`z = (x − mean) / std`, `Standardizer`), and compare the
# measured contraction per step with the predicted `1 − 1/κ`.

# %%
designs = {"raw units": raw, "standardised": Standardizer.fit(x_raw).design(x_raw)}
gaps = {}
for name, design in designs.items():
    eig = np.linalg.eigvalsh(LeastSquares(design, y).gram)  # ascending: mu ... L
    kappa = eig[-1] / eig[0]
    _, gaps[name] = gd_least_squares(design, y, STEPS)
    measured = measured_rate(np.sqrt(gaps[name]))  # the gap is quadratic in the error
    print(
        f"{name:>12}: kappa(X)^2 = {condition_number(design) ** 2:.3e}, kappa(H) = {kappa:.3e}, "
        f"predicted rate {1 - 1 / kappa:.10f}, measured {measured:.10f}, "
        f"gap after {STEPS} steps {gaps[name][-1]:.3e}"
    )
    assert np.isclose(condition_number(design) ** 2, kappa, rtol=1e-6)

std_eig = np.linalg.eigvalsh(LeastSquares(designs["standardised"], y).gram)
assert np.isclose(
    measured_rate(np.sqrt(gaps["standardised"])), 1 - std_eig[0] / std_eig[-1], atol=1e-6
)
assert gaps["standardised"][-1] < 1e-2 * gaps["raw units"][-1]

# %% [markdown]
# With κ ≈ 5·10⁷ the raw problem would need on the order of 10⁹ steps; standardised, κ ≈ 470
# and the optimality gap falls geometrically at exactly the predicted rate (a straight line on a
# log scale, below).

# %%
fig, ax = plt.subplots(figsize=(7, 4))
for name, g in gaps.items():
    ax.semilogy(np.arange(1, len(g) + 1), g, label=name)
ax.set(
    title="gradient descent on diabetes least squares (step 1/L)",
    xlabel="step",
    ylabel="optimality gap f(w) − f(w*)",
)
ax.legend()
plt.show()

# %% [markdown]
# **What to take upward.** Every optimiser in layers 1–5 lives inside this picture: momentum
# changes the rate to `1 − 1/√κ`, Adam rescales each coordinate to shrink the effective κ, and
# normalisation layers keep κ small inside the network. `layer0_math/README.md` has the
# derivations; `python -m layer0_math gd_quadratic` measures the rates on synthetic quadratics.
