"""Layer 0: the mathematics under deep learning, the datasets, and the run record.

Modules: ``linalg``, ``calculus``, ``probability``, ``numerics``, ``information`` (the maths),
``datasets`` (every dataset as numpy arrays), ``lab`` (the run record every layer writes).
"""

from layer0_math.calculus import (
    GradcheckError,
    GradcheckResult,
    gradcheck,
    numerical_gradient,
    numerical_jacobian,
)
from layer0_math.information import (
    cross_entropy,
    cross_entropy_from_logits,
    entropy,
    kl_divergence,
)
from layer0_math.linalg import (
    PowerIterationResult,
    condition_number,
    eigh_qr,
    frobenius_norm,
    hessenberg,
    householder_qr,
    lstsq_normal_equations,
    lstsq_qr,
    lstsq_svd,
    power_iteration,
    singular_values,
    solve_upper_triangular,
    spectral_norm,
    vector_norm,
)
from layer0_math.numerics import (
    kahan_sum,
    largest_finite,
    log_softmax,
    logsumexp,
    machine_epsilon,
    quadratic_roots,
    softmax,
    to_bfloat16,
)
from layer0_math.probability import (
    BetaPosterior,
    MonteCarloEstimate,
    beta_binomial_update,
    box_muller,
    gaussian_log_likelihood,
    gaussian_mle,
    inverse_cdf_sample,
    monte_carlo_expectation,
    sample_categorical,
    sample_exponential,
)

__all__ = [
    "BetaPosterior", "GradcheckError", "GradcheckResult", "MonteCarloEstimate",
    "PowerIterationResult", "beta_binomial_update", "box_muller", "condition_number",
    "cross_entropy", "cross_entropy_from_logits", "eigh_qr", "entropy", "frobenius_norm",
    "gaussian_log_likelihood", "gaussian_mle", "gradcheck", "hessenberg", "householder_qr",
    "inverse_cdf_sample", "kahan_sum", "kl_divergence", "largest_finite", "log_softmax",
    "logsumexp", "lstsq_normal_equations", "lstsq_qr", "lstsq_svd", "machine_epsilon",
    "monte_carlo_expectation", "numerical_gradient", "numerical_jacobian", "power_iteration",
    "quadratic_roots", "sample_categorical", "sample_exponential", "singular_values",
    "softmax", "solve_upper_triangular", "spectral_norm", "to_bfloat16", "vector_norm",
]
