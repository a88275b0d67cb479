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

from collections.abc import Callable
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


def compute_crossproducts(
    X: np.ndarray, y: np.ndarray, Z: np.ndarray, codes: np.ndarray, n_groups: int
) -> CrossProducts:
    """Sum ``Z_i'Z_i`` and ``Z_i'[X_i y_i]`` within groups (``codes`` in ``0..n_groups-1``)."""
    W = np.column_stack([X, y])
    if codes.min(initial=0) < 0 or np.bincount(codes, minlength=n_groups).min() == 0:
        raise ValueError("every group code in 0..n_groups-1 must occur at least once")
    Zc, Wc = np.ascontiguousarray(Z.T), np.ascontiguousarray(W.T)  # columns as rows
    q, k = Zc.shape[0], Wc.shape[0]
    ztz = np.empty((q, q, n_groups))
    ztw = np.empty((q, k, n_groups))
    for a in range(q):
        for b in range(a, q):
            ztz[a, b] = ztz[b, a] = np.bincount(codes, Zc[a] * Zc[b], minlength=n_groups)
        for j in range(k):
            ztw[a, j] = np.bincount(codes, Zc[a] * Wc[j], minlength=n_groups)
    return CrossProducts(ztz=ztz, ztw=ztw, wtw=Wc @ Wc.T, n_obs=len(y))


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


# The per-group products below loop over the small q and p indices and combine whole (G,)
# vectors: a BLAS call with tiny inner dimensions over millions of groups is far slower.


def _bmm(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Per-group product of ``(a, k, G)`` and ``(k, m, G)`` stacks (small ``k``)."""
    out = A[:, 0, None, :] * B[None, 0]
    for k in range(1, A.shape[1]):
        out += A[:, k, None, :] * B[None, k]
    return out


def _tmul(T: np.ndarray, M: np.ndarray) -> np.ndarray:
    """``T' M_i`` for every group: ``out[a] = sum_c T[c, a] M[c]`` (``M`` is ``(q, ...)``)."""
    out = np.zeros((T.shape[1], *M.shape[1:]))
    for a, c in zip(*np.nonzero(T.T), strict=True):
        out[a] += T[c, a] * M[c]
    return out


def _rmul(M: np.ndarray, T: np.ndarray) -> np.ndarray:
    """``M_i T`` for every group: ``out[:, b] = sum_d M[:, d] T[d, b]`` (``M`` is ``(r, k, G)``)."""
    out = np.zeros((M.shape[0], T.shape[1], M.shape[2]))
    for b, d in zip(*np.nonzero(T.T), strict=True):
        out[:, b] += T[d, b] * M[:, d]
    return out


def _sandwich(T: np.ndarray, M: np.ndarray) -> np.ndarray:
    """``T' M_i T`` for every group."""
    return _tmul(T, _rmul(M, T))


def _gram(C: np.ndarray) -> np.ndarray:
    """``sum_i C_i' C_i`` for a ``(q, m, G)`` stack, as ``q`` BLAS products."""
    return sum(C[a] @ C[a].T for a in range(C.shape[0]))


CHUNK = 8192  # groups per block: keeps the per-group temporaries in cache


def _chunks(cp: CrossProducts) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(Z'Z, Z'W)`` views over consecutive blocks of groups."""
    return [(cp.ztz[:, :, i:i + CHUNK], cp.ztw[:, :, i:i + CHUNK])
            for i in range(0, cp.n_groups, CHUNK)]


def _factor(T: np.ndarray, cp: CrossProducts) -> tuple[list[np.ndarray], float, np.ndarray]:
    """Per-block Cholesky factors ``L_i``, ``log|A|`` and ``S = [X y]'V^-1[X y]`` (relative V)."""
    q = cp.q
    S, logdet, Ls = cp.wtw.copy(), 0.0, []
    for ztz, ztw in _chunks(cp):
        A = _sandwich(T, ztz)
        A += np.eye(q)[:, :, None]
        L = _chol(A)
        S -= _gram(_forward(L, _tmul(T, ztw)))
        logdet += 2.0 * np.log(L[np.arange(q), np.arange(q)]).sum()
        Ls.append(L)
    return Ls, logdet, S


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

    The groups are processed in blocks of :data:`CHUNK` (sums accumulate across blocks).
    """
    q, p, n = cp.q, cp.p, cp.n_obs
    T = theta_to_factor(theta, q)
    Ls, logdet_a, S = _factor(T, cp)
    try:
        R = np.linalg.cholesky(S)
    except np.linalg.LinAlgError:
        return np.inf, np.zeros_like(theta)
    r2 = R[p, p] ** 2
    logdet_rx = 2.0 * np.log(np.diag(R)[:p]).sum()
    dev = _criterion(n, p, r2, logdet_a, logdet_rx, reml)
    if not gradient:
        return dev, np.zeros_like(theta)
    beta = np.linalg.solve(R[:p, :p].T, R[p, :p])
    P_rx = np.linalg.inv(R[:p, :p] @ R[:p, :p].T) if reml else None
    parts = [_gradient_sums(T, L, ztz, ztw, beta, P_rx) for L, (ztz, ztw)
             in zip(Ls, _chunks(cp), strict=True)]
    g_a, g_r2, c_rx = (sum(part[k] for part in parts) for k in range(3))
    grad = g_a + ((n - p if reml else n) / r2) * g_r2
    if reml:
        grad = grad - 2.0 * c_rx @ T
    return dev, grad[theta_index(q)]


def _gradient_sums(
    T: np.ndarray, L: np.ndarray, ztz: np.ndarray, ztw: np.ndarray, beta: np.ndarray,
    P_rx: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One block's share of ``d log|A|``, ``d r2`` and ``C`` (see :func:`deviance`)."""
    p = len(beta)
    Ainv = _inverse_spd(L)
    ztx = ztw[:, :p, :]
    zr0 = ztw[:, p, :] - _rmul(ztx, beta[:, None])[:, 0]  # Z_i'(y_i - X_i beta)
    MT = _rmul(ztz, T)  # M_i T
    u = (Ainv * _tmul(T, zr0)[None]).sum(axis=1)
    ztr = zr0 - (MT * u[None]).sum(axis=1)
    g_a = 2.0 * np.tensordot(MT, Ainv, axes=([1, 2], [1, 2]))
    g_r2 = -2.0 * ztr @ u.T
    if P_rx is None:
        return g_a, g_r2, np.zeros_like(g_a)
    Q = ztx - _bmm(MT, _bmm(Ainv, _tmul(T, ztx)))  # Q_i = Z_i'X_i - M_i T A_i^-1 T' Z_i'X_i
    return g_a, g_r2, np.tensordot(Q, _rmul(Q, P_rx), axes=([1, 2], [1, 2]))


def estimates(theta: np.ndarray, cp: CrossProducts, reml: bool) -> Fit:
    """Fixed effects, their covariance and the variance components at ``theta``."""
    q, p, n = cp.q, cp.p, cp.n_obs
    dev = deviance(theta, cp, reml, gradient=False)[0]
    T = theta_to_factor(theta, q)
    S = _factor(T, cp)[2]
    R = np.linalg.cholesky(S)
    beta = np.linalg.solve(R[:p, :p].T, R[p, :p])
    sigma2 = R[p, p] ** 2 / (n - p if reml else n)
    vcov = sigma2 * np.linalg.inv(S[:p, :p])
    return Fit(theta=np.asarray(theta, float), beta=beta, vcov=vcov, cov_re=sigma2 * T @ T.T,
               scale=float(sigma2), deviance=dev)


Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]


def optimize_theta(cp: CrossProducts, reml: bool) -> tuple[np.ndarray, bool, str]:
    """Minimise the profiled deviance over ``theta`` (see :func:`minimize_deviance`)."""
    return minimize_deviance(lambda t: deviance(t, cp, reml), [cp.q])


def minimize_deviance(fun: Objective, blocks: list[int]) -> tuple[np.ndarray, bool, str]:
    """Minimise ``fun`` (deviance and gradient) over the stacked ``theta`` of ``blocks``.

    ``blocks`` lists ``q`` of each random-effects term (one factor ``T`` per term). The deviance
    depends on each ``T`` only through ``T T'``, so it is even in each column's sign and its
    derivative in a diagonal element vanishes at 0. A bound ``T_jj >= 0`` would therefore trap a
    gradient method at that saddle; we optimise without bounds and flip column signs afterwards
    (``T -> T D``, ``D = diag(+-1)``, same ``T T'``).

    BFGS starts, like lme4, from ``T = I`` and stops at a loose gradient tolerance (1e-7 x the
    deviance): with ~1e6 rows the deviance's rounding noise exceeds the decrease a line search
    could still see. Newton steps on the gradient (Hessian by differences of gradients, computed
    once) then converge without relying on deviance differences. When a diagonal element ends
    near 0, a second pass restarts away from that saddle and the lower deviance is kept.
    Converged means the last Newton step is below 1e-6 in every element of ``theta`` (a
    scaled-gradient check, like lme4's), or, where the Hessian is not positive definite,
    ``max |gradient| <= 1e-6 max(1, deviance)``. Returns ``(theta, ok, message)``.
    """
    start = np.concatenate([np.eye(q)[theta_index(q)] for q in blocks])
    diag = np.concatenate([np.equal(*theta_index(q)) for q in blocks])
    theta, dev, ok, message = _minimize_from(start, fun)
    if np.any(np.abs(theta[diag]) < 0.05):
        restart = theta.copy()
        restart[diag] = np.where(np.abs(restart[diag]) < 0.05, 0.1, restart[diag])
        second = _minimize_from(restart, fun)
        if second[1] < dev:
            theta, dev, ok, message = second
    return canonical_theta(theta, blocks), ok, message


def _minimize_from(start: np.ndarray, fun: Objective):
    from scipy.optimize import minimize

    gtol = 1e-7 * max(1.0, abs(fun(start)[0]))
    res = minimize(fun, start, jac=True, method="BFGS", options={"gtol": gtol, "maxiter": 1000})
    theta, step = _newton_polish(res.x, fun)
    dev, grad = fun(theta)
    if step is not None:
        ok = bool(np.max(np.abs(step)) < 1e-6)
    else:
        ok = bool(np.max(np.abs(grad), initial=0.0) <= 1e-6 * max(1.0, abs(dev)))
    message = f"{res.message} Newton step {'n/a' if step is None else np.max(np.abs(step)):.1e}"
    return theta, dev, ok and bool(np.isfinite(dev)), message


def _newton_polish(theta: np.ndarray, fun: Objective, steps: int = 8):
    """Newton-chord iterations on the gradient (Hessian computed once at the BFGS optimum).

    Returns ``theta`` and the last step; the step is None when the Hessian is not positive
    definite (then BFGS's answer stands).
    """
    grad = fun(theta)[1]
    H = _hessian(theta, grad, fun)
    try:
        np.linalg.cholesky(H)
    except np.linalg.LinAlgError:
        return theta, None
    step = np.linalg.solve(H, grad)
    for _ in range(steps):
        new_grad = fun(theta - step)[1]
        if not np.all(np.isfinite(new_grad)) or np.linalg.norm(new_grad) >= np.linalg.norm(grad):
            break  # at the noise floor of the gradient: keep theta
        theta, grad = theta - step, new_grad
        step = np.linalg.solve(H, grad)
        if np.max(np.abs(step)) < 1e-10:
            break
    return theta, step


def _hessian(theta: np.ndarray, grad: np.ndarray, fun: Objective) -> np.ndarray:
    """Forward differences of the gradient, symmetrised."""
    h = 1e-5 * np.maximum(1.0, np.abs(theta))
    cols = [(fun(theta + h[k] * e)[1] - grad) / h[k] for k, e in enumerate(np.eye(len(theta)))]
    H = np.column_stack(cols)
    return (H + H.T) / 2.0


def split_theta(theta: np.ndarray, blocks: list[int]) -> list[np.ndarray]:
    """The ``theta`` of each block, in order."""
    sizes = np.cumsum([q * (q + 1) // 2 for q in blocks])[:-1]
    return np.split(np.asarray(theta, dtype=float), sizes)


def canonical_theta(theta: np.ndarray, blocks: list[int]) -> np.ndarray:
    """Flip column signs of each ``T`` so that its diagonal is non-negative (``T T'`` unchanged)."""
    out = []
    for part, q in zip(split_theta(theta, blocks), blocks, strict=True):
        T = theta_to_factor(part, q)
        out.append((T * np.where(np.diag(T) < 0, -1.0, 1.0)[None, :])[theta_index(q)])
    return np.concatenate(out)


def is_singular(theta: np.ndarray, blocks: list[int], tol: float = 1e-4) -> bool:
    """lme4's ``isSingular``: a diagonal element of a ``T`` within ``tol`` of its bound 0."""
    diag = np.concatenate([np.equal(*theta_index(q)) for q in blocks])
    return bool(np.any(np.asarray(theta)[diag] < tol))
