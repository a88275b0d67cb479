"""Fast exact engine for linear mixed models with one grouping factor.

The profiled (RE)ML deviance of Bates, Maechler, Bolker & Walker (2015, J Stat Softw 67(1),
section 3, eqs. 34-42), specialised to a block-diagonal random-effects design: one grouping
factor with ``q`` random terms (intercept and/or slopes), an unstructured ``q x q`` covariance.

Per group ``i`` the cross-products ``Z_i'Z_i``, ``Z_i'X_i`` and ``Z_i'y_i`` are computed once
(cost linear in the number of rows). Each deviance evaluation then works on ``q x q`` blocks
stored as ``(q, q, G)`` arrays: the Cholesky factors and triangular solves are written out over
the small ``q`` indices and vectorised over the ``G`` groups, so there is no Python loop over
groups and no per-matrix LAPACK call. The gradient with respect to the relative covariance factor
is analytic (derived below), so BFGS needs few evaluations.

Notation (as in lme4): ``Lambda = I_G kron T`` with ``T`` lower triangular, ``b = Lambda u``,
``u ~ N(0, sigma^2 I)``, ``theta`` = the lower triangle of ``T`` in column-major order.
``A_i = T' Z_i'Z_i T + I``; ``RX'RX = X'X - sum_i (L_i^-1 T'Z_i'X_i)'(L_i^-1 T'Z_i'X_i)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CrossProducts:
    """Sufficient statistics of the data for every value of ``theta``.

    ``ztz`` is ``(q, q, G)``, ``ztw`` is ``(q, p + 1, G)`` with ``W = [X y]``, ``wtw`` is
    ``(p + 1, p + 1)``.
    """

    ztz: np.ndarray
    ztw: np.ndarray
    wtw: np.ndarray
    n_obs: int

    @property
    def q(self) -> int:
        return self.ztz.shape[0]

    @property
    def p(self) -> int:
        return self.wtw.shape[0] - 1

    @property
    def n_groups(self) -> int:
        return self.ztz.shape[2]


@dataclass(frozen=True)
class Fit:
    """Estimates at the optimum of the profiled deviance (lme4's conventions)."""

    theta: np.ndarray
    beta: np.ndarray
    vcov: np.ndarray  # sigma^2 (RX'RX)^-1
    cov_re: np.ndarray  # sigma^2 T T'
    scale: float
    deviance: float  # -2 log-likelihood (REML criterion when reml)
    gradient: np.ndarray


def compute_crossproducts(
    X: np.ndarray, y: np.ndarray, Z: np.ndarray, codes: np.ndarray, n_groups: int
) -> CrossProducts:
    """Sum ``Z_i'Z_i`` and ``Z_i'[X_i y_i]`` within groups (``codes`` in ``0..n_groups-1``)."""
    W = np.column_stack([X, y])
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    if len(starts) != n_groups:
        raise ValueError("every group code must occur at least once")
    Zs, Ws = Z[order], W[order]
    q, k = Z.shape[1], W.shape[1]
    ztz = np.empty((q, q, n_groups))
    ztw = np.empty((q, k, n_groups))
    for a in range(q):
        ztz[a] = np.add.reduceat(Zs * Zs[:, [a]], starts, axis=0).T
        ztw[a] = np.add.reduceat(Ws * Zs[:, [a]], starts, axis=0).T
    return CrossProducts(ztz=ztz, ztw=ztw, wtw=W.T @ W, n_obs=len(y))


def theta_index(q: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of each ``theta`` element in ``T`` (lower triangle, column-major, as lme4)."""
    pairs = [(i, j) for j in range(q) for i in range(j, q)]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def theta_to_factor(theta: np.ndarray, q: int) -> np.ndarray:
    T = np.zeros((q, q))
    T[theta_index(q)] = theta
    return T


def _chol(A: np.ndarray) -> np.ndarray:
    """Lower Cholesky factors of a ``(q, q, G)`` stack of positive-definite blocks."""
    q = A.shape[0]
    L = np.zeros_like(A)
    for j in range(q):
        s = A[j, j] - np.einsum("kg,kg->g", L[j, :j], L[j, :j])
        L[j, j] = np.sqrt(s)
        for i in range(j + 1, q):
            L[i, j] = (A[i, j] - np.einsum("kg,kg->g", L[i, :j], L[j, :j])) / L[j, j]
    return L


def _forward(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve ``L_i X_i = B_i`` for every group; ``B`` is ``(q, m, G)``."""
    X = np.empty_like(B)
    for j in range(L.shape[0]):
        X[j] = (B[j] - np.einsum("kg,kmg->mg", L[j, :j], X[:j])) / L[j, j]
    return X


def _inverse_spd(L: np.ndarray) -> np.ndarray:
    """``A_i^-1 = L_i^-T L_i^-1`` from the Cholesky factors."""
    q, G = L.shape[0], L.shape[2]
    eye = np.broadcast_to(np.eye(q)[:, :, None], (q, q, G))
    Linv = _forward(L, np.ascontiguousarray(eye))
    return (Linv[:, :, None, :] * Linv[:, None, :, :]).sum(axis=0)


def _bmm(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Per-group product of ``(a, k, G)`` and ``(k, m, G)`` stacks (small ``k``)."""
    return (A[:, :, None, :] * B[None, :, :, :]).sum(axis=1)


def _tmul(T: np.ndarray, M: np.ndarray) -> np.ndarray:
    """``T' M_i`` for every group: one BLAS product over the stacked ``(q, m, G)`` array."""
    return np.tensordot(T, M, axes=(0, 0))


def _sandwich(T: np.ndarray, M: np.ndarray) -> np.ndarray:
    """``T' M_i T`` for every group."""
    return _tmul(T, _tmul(T, M).transpose(1, 0, 2)).transpose(1, 0, 2)


def _gram(C: np.ndarray) -> np.ndarray:
    """``sum_i C_i' C_i`` for a ``(q, m, G)`` stack, as ``q`` BLAS products."""
    return sum(C[a] @ C[a].T for a in range(C.shape[0]))


def _factor(T: np.ndarray, cp: CrossProducts) -> tuple[np.ndarray, np.ndarray]:
    """Per-group Cholesky factors ``L_i`` and ``S = [X y]'V^-1[X y]`` (relative ``V``)."""
    A = _sandwich(T, cp.ztz)
    A += np.eye(cp.q)[:, :, None]
    L = _chol(A)
    C = _forward(L, _tmul(T, cp.ztw))
    return L, cp.wtw - _gram(C)


def _criterion(n: int, p: int, r2: float, logdet_a: float, logdet_rx: float, reml: bool) -> float:
    dof = n - p if reml else n
    extra = logdet_rx if reml else 0.0
    return float(logdet_a + extra + dof * (1.0 + np.log(2.0 * np.pi * r2 / dof)))


def deviance(
    theta: np.ndarray, cp: CrossProducts, reml: bool, gradient: bool = True
) -> tuple[float, np.ndarray]:
    """Profiled deviance ``-2 l(theta)`` (REML criterion when ``reml``) and its gradient.

    Notes
    -----
    With ``r2`` the penalised residual sum of squares, ``n`` rows and ``p`` fixed effects::

        ML:   log|A| + n (1 + log(2 pi r2 / n))
        REML: log|A| + log|RX'RX| + (n - p) (1 + log(2 pi r2 / (n - p)))

    Gradient, for ``dT = E_ab`` (``A_i^-1`` inverse blocks, ``M_i = Z_i'Z_i``, ``u_i`` the
    conditional modes, ``Z_i'r_i`` the residual projections, ``Q_i = Z_i'V_i^-1 X_i``,
    ``P = (RX'RX)^-1``)::

        d log|A|     = 2 sum_i (A_i^-1 T' M_i)[b, a]
        d r2         = -2 sum_i (Z_i'r_i)[a] u_i[b]          (envelope theorem)
        d log|RX'RX| = -2 (C T)[a, b],  C = sum_i Q_i P Q_i'
    """
    q, p, n = cp.q, cp.p, cp.n_obs
    T = theta_to_factor(theta, q)
    L, S = _factor(T, cp)
    try:
        R = np.linalg.cholesky(S)
    except np.linalg.LinAlgError:
        return np.inf, np.zeros_like(theta)
    r2 = R[p, p] ** 2
    logdet_a = 2.0 * np.log(L[np.arange(q), np.arange(q)]).sum()
    logdet_rx = 2.0 * np.log(np.diag(R)[:p]).sum()
    dev = _criterion(n, p, r2, logdet_a, logdet_rx, reml)
    if not gradient:
        return dev, np.zeros_like(theta)
    grad = _gradient(T, L, R, r2, cp, reml)
    return dev, grad[theta_index(q)]


def _gradient(
    T: np.ndarray, L: np.ndarray, R: np.ndarray, r2: float, cp: CrossProducts, reml: bool
) -> np.ndarray:
    """Gradient of the profiled deviance with respect to every element of ``T`` (``q x q``)."""
    p, n = cp.p, cp.n_obs
    beta = np.linalg.solve(R[:p, :p].T, R[p, :p])
    Ainv = _inverse_spd(L)
    ztx = cp.ztw[:, :p, :]
    zr0 = cp.ztw[:, p, :] - np.tensordot(ztx, beta, axes=(1, 0))  # Z_i'(y_i - X_i beta)
    MT = np.tensordot(cp.ztz, T, axes=(1, 0)).transpose(0, 2, 1)  # M_i T
    u = (Ainv * np.tensordot(T, zr0, axes=(0, 0))[None]).sum(axis=1)
    ztr = zr0 - (MT * u[None]).sum(axis=1)
    g_a = 2.0 * np.tensordot(MT, Ainv, axes=([1, 2], [1, 2]))
    g_r2 = -2.0 * ztr @ u.T
    dof = n - p if reml else n
    grad = g_a + (dof / r2) * g_r2
    if reml:
        # Q_i = Z_i'X_i - M_i T A_i^-1 T' Z_i'X_i
        Q = ztx - _bmm(MT, _bmm(Ainv, _tmul(T, ztx)))
        P_rx = np.linalg.inv(R[:p, :p] @ R[:p, :p].T)
        PQ = np.tensordot(P_rx, Q, axes=(1, 1))  # (p, q, G)
        Cmat = np.tensordot(Q, PQ, axes=([1, 2], [0, 2]))
        grad = grad - 2.0 * Cmat @ T
    return grad


def estimates(theta: np.ndarray, cp: CrossProducts, reml: bool) -> Fit:
    """Fixed effects, their covariance and the variance components at ``theta``."""
    q, p, n = cp.q, cp.p, cp.n_obs
    dev, grad = deviance(theta, cp, reml)
    T = theta_to_factor(theta, q)
    S = _factor(T, cp)[1]
    R = np.linalg.cholesky(S)
    beta = np.linalg.solve(R[:p, :p].T, R[p, :p])
    sigma2 = R[p, p] ** 2 / (n - p if reml else n)
    vcov = sigma2 * np.linalg.inv(S[:p, :p])
    return Fit(theta=np.asarray(theta, float), beta=beta, vcov=vcov, cov_re=sigma2 * T @ T.T,
               scale=float(sigma2), deviance=dev, gradient=grad)


def optimize_theta(cp: CrossProducts, reml: bool) -> tuple[np.ndarray, bool, str]:
    """Minimise the profiled deviance over ``theta`` (BFGS with the analytic gradient).

    The deviance depends on ``T`` only through ``T T'``, so it is even in each column's sign and
    its derivative in a diagonal element vanishes at 0. A bound ``T_jj >= 0`` would therefore
    trap a gradient method at that saddle; we optimise without bounds and flip column signs
    afterwards (``T -> T D``, ``D = diag(+-1)``, same ``T T'``). Starts, like lme4, from
    ``T = I`` (BFGS, gradient tolerance 1e-9 x the starting deviance); when a diagonal element ends near 0, a second pass
    restarts with it moved away from the saddle and the lower deviance is kept. Convergence
    requires ``max |gradient| <= 1e-6 max(1, deviance)`` (BFGS may stop on "precision loss" once
    the deviance no longer changes in floating point; the gradient check decides).
    Returns ``(theta, ok, message)``.
    """
    from scipy.optimize import minimize

    q = cp.q
    rows, cols = theta_index(q)
    diag = rows == cols

    start = np.eye(q)[rows, cols]
    # The gradient scales with the deviance (~ rows); asking for more than ~1e-9 relative only
    # burns evaluations on floating-point noise ("precision loss").
    gtol = 1e-9 * max(1.0, abs(deviance(start, cp, reml, gradient=False)[0]))

    def run(start: np.ndarray):
        return minimize(deviance, start, args=(cp, reml), jac=True, method="BFGS",
                        options={"gtol": gtol, "maxiter": 1000})

    best = run(start)
    if np.any(np.abs(best.x[diag]) < 0.05):
        restart = best.x.copy()
        restart[diag] = np.where(np.abs(restart[diag]) < 0.05, 0.1, restart[diag])
        second = run(restart)
        best = second if second.fun < best.fun else best
    theta = canonical_theta(best.x, q)
    ok = bool(np.isfinite(best.fun)
              and np.max(np.abs(best.jac), initial=0.0) <= 1e-6 * max(1.0, abs(best.fun)))
    return theta, ok, str(best.message)


def canonical_theta(theta: np.ndarray, q: int) -> np.ndarray:
    """Flip column signs of ``T`` so that its diagonal is non-negative (``T T'`` unchanged)."""
    T = theta_to_factor(theta, q)
    T = T * np.where(np.diag(T) < 0, -1.0, 1.0)[None, :]
    return T[theta_index(q)]


def is_singular(theta: np.ndarray, q: int, tol: float = 1e-4) -> bool:
    """lme4's ``isSingular``: a diagonal element of ``T`` within ``tol`` of its bound 0."""
    rows, cols = theta_index(q)
    return bool(np.any(theta[rows == cols] < tol))
