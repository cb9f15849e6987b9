"""Layer 0's deliverables: optimisation, regression and initialisation seen through linear algebra.

One module per deliverable, run in this order by ``python -m layer0_math``:

1. :func:`gd_quadratic`: the convergence rates of gradient descent and heavy-ball momentum on
   quadratics, derived (:mod:`layer0_math.optimization`) and measured, and the step-size limit
   ``2/L``.
2. :func:`linear_regression`: least squares five ways (normal equations, QR, SVD, GD, averaged
   SGD) on scikit-learn's diabetes data and on synthetic data; on Vandermonde matrices the
   normal equations lose twice the digits QR loses (error ~ eps kappa^2 against eps kappa).
3. :func:`variance_propagation`: activation and gradient scale through a 50-layer MLP for each
   initialisation scheme (:mod:`layer0_math.initialization`), and how standardising the inputs
   shrinks ``kappa(X^T X)`` and with it the GD steps, ``k ~ kappa log(1/tol)``.
"""

from layer0_math.deliverables.gd_quadratic import gd_quadratic
from layer0_math.deliverables.linear_regression import linear_regression
from layer0_math.deliverables.variance_propagation import variance_propagation

__all__ = ["gd_quadratic", "linear_regression", "variance_propagation"]
