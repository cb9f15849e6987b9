"""Linear algebra: norms, orthogonal factorizations, eigenvalues, and least squares.

**Norms.** The vector p-norm is ``||x||_p = (sum_i |x_i|^p)^(1/p)`` for ``p >= 1`` (``p = inf``:
``max_i |x_i|``). For matrices, the Frobenius norm ``||A||_F = sqrt(sum_ij A_ij^2)`` treats A as a
vector; the spectral (operator 2-) norm ``||A||_2 = max_{x != 0} ||Ax|| / ||x|| = sigma_max(A)``
is the most a matrix can stretch a vector, so ``||A||_2 <= ||A||_F <= sqrt(rank) ||A||_2``.

**Power iteration.** Repeating ``v <- Av / ||Av||`` aligns v with the eigenvector of the
eigenvalue of largest magnitude, because the other components shrink by ``|lambda_i/lambda_1|``
per step. The Rayleigh quotient ``v^T A v`` is the eigenvalue estimate. On ``A^T A`` it gives
``sigma_max^2``, hence the spectral norm.

**Householder QR.** A reflection ``H = I - 2 v v^T`` (``||v|| = 1``) maps a column x onto
``-sign(x_0) ||x|| e_1``; n of them triangularize A: ``H_n ... H_1 A = R``, so ``A = QR`` with
``Q = H_1 ... H_n`` orthogonal. The sign choice avoids cancellation in ``x_0 + sign(x_0)||x||``.
Because it only applies orthogonal maps, QR is backward stable.

**The symmetric QR algorithm.** Reflections from the left and right reduce a symmetric A to a
tridiagonal T (a symmetric Hessenberg matrix) with the same eigenvalues, ``A = Q T Q^T``. A QR
step ``T - mu I = QR``, ``T <- RQ + mu I = Q^T T Q`` is a similarity that keeps T tridiagonal
and drives its last off-diagonal entry to zero; with Wilkinson's shift ``mu`` (the eigenvalue of
the trailing 2x2 block nearer its last entry) convergence is cubic. A negligible off-diagonal
entry splits the problem (deflation), the diagonal becomes the eigenvalues, and the product of
all the Q's the eigenvectors.

**Singular values and conditioning.** ``kappa(A) = sigma_max / sigma_min`` bounds how much a
relative error in b or A is amplified in the solution of ``Ax = b``. The eigenvalues of
``[[0, A], [A^T, 0]]`` are ``+-sigma_i(A)``, which gives singular values from the symmetric
eigensolver without forming ``A^T A`` (that would square kappa and lose twice the digits).

**Least squares** ``min_w ||Xw - y||``: the normal equations ``X^T X w = X^T y`` are fast but
solve a system with condition number ``kappa(X)^2``, so they lose about ``2 log10 kappa`` digits;
QR (``Rw = Q^T y``) and the SVD (``w = V diag(1/sigma) U^T y``) lose only ``log10 kappa``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np


def _as_matrix(A: np.ndarray, name: str = "A", square: bool = False) -> np.ndarray:
    A = np.asarray(A, dtype=np.float64)
    if A.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {A.shape}")
    if square and A.shape[0] != A.shape[1]:
        raise ValueError(f"{name} must be square, got shape {A.shape}")
    if not np.all(np.isfinite(A)):
        raise ValueError(f"{name} has non-finite entries")
    return A


def _as_symmetric(A: np.ndarray) -> np.ndarray:
    A = _as_matrix(A, square=True)
    scale = np.max(np.abs(A)) if A.size else 0.0
    if not np.allclose(A, A.T, rtol=0, atol=1e-10 * max(scale, 1e-300)):
        asym = np.max(np.abs(A - A.T))
        raise ValueError(f"A must be symmetric, got max |A - A^T| = {asym:.3g}")
    return (A + A.T) / 2


# ----------------------------------------------------------------------------- norms


def vector_norm(x: np.ndarray, p: float = 2) -> float:
    """``||x||_p = (sum |x_i|^p)^(1/p)`` for ``p >= 1``, or ``max |x_i|`` for ``p = inf``."""
    if not (isinstance(p, numbers.Real) and p >= 1):  # inf included
        raise ValueError(f"p must be >= 1 or inf for a norm, got p={p!r}")
    a = np.abs(np.asarray(x, dtype=np.float64).ravel())
    if a.size == 0:
        return 0.0
    scale = float(np.max(a))
    if p == math.inf or scale == 0.0:
        return scale
    # Dividing by the largest entry first keeps a^p from overflowing or underflowing.
    return scale * float(np.sum((a / scale) ** p) ** (1.0 / p))


def frobenius_norm(A: np.ndarray) -> float:
    """``||A||_F = sqrt(sum_ij A_ij^2)``: the 2-norm of the entries."""
    return vector_norm(_as_matrix(A), 2)


def spectral_norm(A: np.ndarray, tol: float = 1e-13, max_iter: int = 10_000) -> float:
    """``||A||_2 = sigma_max(A)``, by power iteration on the smaller Gram matrix.

    Power iteration contracts by ``(sigma_2 / sigma_1)^2`` per step, so two nearly equal top
    singular values can leave it unconverged after ``max_iter`` steps; then the answer comes
    from the symmetric QR algorithm (:func:`singular_values`) instead of a wrong estimate.
    """
    A = _as_matrix(A)
    gram = A.T @ A if A.shape[1] <= A.shape[0] else A @ A.T
    if not np.any(gram):
        return 0.0
    result = power_iteration(gram, tol=tol, max_iter=max_iter)
    if not result.converged:
        return float(singular_values(A)[0])
    return math.sqrt(max(result.eigenvalue, 0.0))


@dataclass(frozen=True)
class PowerIterationResult:
    eigenvalue: float
    eigenvector: np.ndarray
    iterations: int
    converged: bool


def power_iteration(
    A: np.ndarray,
    tol: float = 1e-12,
    max_iter: int = 10_000,
    rng: np.random.Generator | None = None,
) -> PowerIterationResult:
    """The eigenvalue of largest magnitude and its eigenvector, by ``v <- Av / ||Av||``.

    Stops when the residual ``||Av - lambda v|| <= tol * ||A||_F``; ``converged`` says whether it
    did within ``max_iter`` steps (a dominant eigenvalue pair ``+-lambda`` never converges).
    """
    A = _as_matrix(A, square=True)
    rng = np.random.default_rng(0) if rng is None else rng
    v = rng.standard_normal(A.shape[0])  # (n,) a random start has a component along v_1
    v /= np.linalg.norm(v)
    scale = frobenius_norm(A)
    eigenvalue = 0.0
    for it in range(1, max_iter + 1):
        w = A @ v
        eigenvalue = float(v @ w)  # Rayleigh quotient
        if np.linalg.norm(w - eigenvalue * v) <= tol * scale:
            return PowerIterationResult(eigenvalue, v, it, True)
        norm_w = np.linalg.norm(w)
        if norm_w == 0.0:  # v is in the null space: the eigenvalue is 0
            return PowerIterationResult(0.0, v, it, True)
        v = w / norm_w
    return PowerIterationResult(eigenvalue, v, max_iter, False)


# ----------------------------------------------------------------------------- factorizations


def _householder_vector(x: np.ndarray) -> np.ndarray | None:
    """Unit v with ``(I - 2vv^T) x = -sign(x_0) ||x|| e_1``, or None when x is zero."""
    norm_x = np.linalg.norm(x)
    if norm_x == 0.0:
        return None
    v = x.copy()
    v[0] += math.copysign(norm_x, x[0])  # same signs: no cancellation
    return v / np.linalg.norm(v)


def householder_qr(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reduced QR: ``A = QR`` with Q (m, k) orthonormal columns, R (k, n) upper, k = min(m, n).

    The reflections are stored and applied to the first k columns of the identity at the end
    (``Q = H_1 ... H_k I[:, :k]``), so a tall A costs O(m n k), never an (m, m) matrix.
    """
    A = _as_matrix(A)
    m, n = A.shape
    k = min(m, n)
    R = A.copy()
    reflectors: list[np.ndarray | None] = []
    for j in range(k):
        v = _householder_vector(R[j:, j])  # (m - j,)
        reflectors.append(v)
        if v is not None:
            R[j:, j:] -= 2.0 * np.outer(v, v @ R[j:, j:])
    Q = np.eye(m, k)
    for j in reversed(range(k)):
        v = reflectors[j]
        if v is not None:
            Q[j:, :] -= 2.0 * np.outer(v, v @ Q[j:, :])
    return Q, np.triu(R[:k, :])


def hessenberg(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``A = Q H Q^T`` with H upper Hessenberg (zero below the first subdiagonal), Q orthogonal.

    For a symmetric A, H is tridiagonal.
    """
    A = _as_matrix(A, square=True)
    n = A.shape[0]
    H = A.copy()
    Q = np.eye(n)
    for k in range(n - 2):
        v = _householder_vector(H[k + 1 :, k])
        if v is None:
            continue
        H[k + 1 :, :] -= 2.0 * np.outer(v, v @ H[k + 1 :, :])  # from the left ...
        H[:, k + 1 :] -= 2.0 * np.outer(H[:, k + 1 :] @ v, v)  # ... and the right: a similarity
        Q[:, k + 1 :] -= 2.0 * np.outer(Q[:, k + 1 :] @ v, v)
    return np.triu(H, -1), Q


def _tridiagonal_part(T: np.ndarray) -> np.ndarray:
    """The symmetric tridiagonal band of T (the rest is rounding noise)."""
    T = np.triu(np.tril(T, 1), -1)
    return (T + T.T) / 2


def _wilkinson_shift(a: float, b: float, c: float) -> float:
    """The eigenvalue of ``[[a, b], [b, c]]`` closer to c, computed without cancellation."""
    d = (a - c) / 2
    if b == 0.0:
        return c
    return c - b * b / (d + math.copysign(math.hypot(d, b), d if d != 0 else 1.0))


def eigh_qr(
    A: np.ndarray, tol: float = np.finfo(np.float64).eps, max_iter: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and orthonormal eigenvectors (columns) of a symmetric matrix.

    Tridiagonalize, then run Wilkinson-shifted QR steps on the unreduced trailing block, deflating
    when ``|T[k, k-1]| <= tol * (|T[k, k]| + |T[k-1, k-1]|)``. Same contract as
    ``numpy.linalg.eigh``: ``A @ V = V @ diag(w)``.
    """
    A = _as_symmetric(A)
    n = A.shape[0]
    max_iter = 30 * max(n, 1) if max_iter is None else max_iter
    T, V = hessenberg(A)
    T = _tridiagonal_part(T)

    def negligible(k: int) -> bool:
        return abs(T[k, k - 1]) <= tol * (abs(T[k, k]) + abs(T[k - 1, k - 1]))

    hi, steps = n - 1, 0
    while hi > 0:
        if negligible(hi):
            T[hi, hi - 1] = T[hi - 1, hi] = 0.0
            hi -= 1
            continue
        lo = hi - 1
        while lo > 0 and not negligible(lo):
            lo -= 1
        if lo > 0:  # T[lo, lo-1] is negligible: the block lo..hi is decoupled
            T[lo, lo - 1] = T[lo - 1, lo] = 0.0
        if steps == max_iter:
            raise RuntimeError(f"eigh_qr did not converge in max_iter={max_iter} QR steps")
        mu = _wilkinson_shift(T[hi - 1, hi - 1], T[hi, hi - 1], T[hi, hi])
        block = slice(lo, hi + 1)
        shifted = T[block, block] - mu * np.eye(hi + 1 - lo)
        Q, R = householder_qr(shifted)
        T[block, block] = _tridiagonal_part(R @ Q) + mu * np.eye(hi + 1 - lo)
        V[:, block] = V[:, block] @ Q
        steps += 1
    w = np.diag(T).copy()
    order = np.argsort(w)
    return w[order], V[:, order]


def singular_values(A: np.ndarray) -> np.ndarray:
    """Singular values (descending) from the eigenvalues of ``[[0, R], [R^T, 0]]``, A = QR.

    QR first shrinks a tall A to its square factor R (same singular values); the augmented
    symmetric matrix has eigenvalues ``+-sigma_i``, so no ``A^T A`` is ever formed.
    """
    A = _as_matrix(A)
    if A.shape[0] < A.shape[1]:
        A = A.T
    n = A.shape[1]
    if n == 0:
        return np.zeros(0)
    _, R = householder_qr(A)  # (n, n)
    augmented = np.block([[np.zeros((n, n)), R], [R.T, np.zeros((n, n))]])
    w, _ = eigh_qr(augmented)
    return np.clip(w[::-1][:n], 0.0, None)


def condition_number(A: np.ndarray) -> float:
    """``kappa_2(A) = sigma_max / sigma_min`` (inf for a rank-deficient A)."""
    s = singular_values(A)
    if s.size == 0:
        raise ValueError("condition number of an empty matrix is undefined")
    return math.inf if s[-1] == 0.0 else float(s[0] / s[-1])


# ----------------------------------------------------------------------------- least squares


def solve_upper_triangular(R: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Back substitution: x with ``Rx = b`` for an upper-triangular, non-singular R."""
    R = _as_matrix(R, "R", square=True)
    b = np.asarray(b, dtype=np.float64)
    if b.shape[0] != R.shape[0]:
        raise ValueError(f"b has {b.shape[0]} rows, R is {R.shape}")
    diag = np.diag(R)
    if np.any(diag == 0.0):
        raise np.linalg.LinAlgError(f"R is singular: zero pivot at {int(np.argmin(np.abs(diag)))}")
    x = np.zeros_like(b)
    for i in range(R.shape[0] - 1, -1, -1):
        x[i] = (b[i] - R[i, i + 1 :] @ x[i + 1 :]) / R[i, i]
    return x


def _check_lstsq(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X = _as_matrix(X, "X")
    y = np.asarray(y, dtype=np.float64)
    if y.ndim not in (1, 2) or y.shape[0] != X.shape[0]:
        raise ValueError(f"y must have {X.shape[0]} rows to match X {X.shape}, got {y.shape}")
    return X, y


def lstsq_normal_equations(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares by solving ``X^T X w = X^T y`` (condition number kappa(X)^2)."""
    X, y = _check_lstsq(X, y)
    return np.linalg.solve(X.T @ X, X.T @ y)


def lstsq_qr(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares by Householder QR: ``X = QR``, then ``Rw = Q^T y`` (full column rank X)."""
    X, y = _check_lstsq(X, y)
    if X.shape[0] < X.shape[1]:
        raise ValueError(f"lstsq_qr needs a tall X (rows >= columns), got {X.shape}")
    Q, R = householder_qr(X)
    return solve_upper_triangular(R, Q.T @ y)


def lstsq_svd(X: np.ndarray, y: np.ndarray, rcond: float | None = None) -> np.ndarray:
    """Minimum-norm least squares ``w = V diag(1/sigma) U^T y``, dropping ``sigma <= rcond
    sigma_max`` (default ``rcond = eps * max(m, n)``, as ``numpy.linalg.lstsq``)."""
    X, y = _check_lstsq(X, y)
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    rcond = np.finfo(np.float64).eps * max(X.shape) if rcond is None else rcond
    keep = s > rcond * (s[0] if s.size else 0.0)
    inv_s = np.where(keep, 1.0 / np.where(keep, s, 1.0), 0.0)
    coef = inv_s[:, None] * (U.T @ y) if y.ndim == 2 else inv_s * (U.T @ y)
    return Vt.T @ coef
