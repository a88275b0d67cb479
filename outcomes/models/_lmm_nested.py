"""Fast exact engine for two nested grouping factors (episodes within therapists).

The same profiled deviance as :mod:`outcomes.models._lmm` (Bates et al. 2015, eqs. 34-42) for
``y = X beta + Z1 b1 + Z2 b2 + e``: ``b1`` per inner group (episode; ``q1`` terms, factor
``T1``), ``b2`` per outer group (therapist; ``q2`` terms, factor ``T2``), each inner group inside
exactly one outer group (lme4's ``(terms | therapist/episode)`` grouping).

Ordering the random effects inner-first, the sparse Cholesky factor of
``Lambda' Z'Z Lambda + I`` has no fill-in across outer groups, so it is computed exactly from
small blocks: per inner group ``L1_e = chol(T1' Z1_e'Z1_e T1 + I)`` and
``F_e = L1_e^-1 T1' Z1_e'Z2_e T2``; per outer group
``L2_t = chol(T2' Z2_t'Z2_t T2 + I - sum_{e in t} F_e'F_e)``. The fixed-effects rows follow
the same pattern. Per-group sums over the inner groups of an outer group are ``bincount`` calls,
so an evaluation is linear in the number of groups with no Python loop over them. The gradient
is taken by central differences (``1 + 2k`` evaluations for ``k`` parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from outcomes.models._lmm import (
    CrossProducts,
    _bmm,
    _chol,
    _criterion,
    _forward,
    _gram,
    _rmul,
    _sandwich,
    _tmul,
    compute_crossproducts,
    split_theta,
    theta_to_factor,
)


@dataclass(frozen=True)
class NestedCrossProducts:
    """``inner``/``outer``: per-group ``Z'Z`` and ``Z'[X y]``; ``z1z2``: ``Z1_e'Z2_e``."""

    inner: CrossProducts
    outer: CrossProducts
    z1z2: np.ndarray  # (q1, q2, G1)
    parent: np.ndarray  # outer group of each inner group, (G1,)

    @property
    def blocks(self) -> list[int]:
        return [self.inner.q, self.outer.q]


def compute_nested_crossproducts(
    X: np.ndarray, y: np.ndarray, Z1: np.ndarray, Z2: np.ndarray,
    inner: np.ndarray, outer: np.ndarray, n_inner: int, n_outer: int,
) -> NestedCrossProducts:
    """Cross-products for both levels; ``inner`` codes must each lie in one ``outer`` group."""
    parent = np.zeros(n_inner, dtype=np.intp)
    parent[inner] = outer
    if not np.array_equal(parent[inner], outer):
        raise ValueError("inner groups are not nested in the outer groups")
    z1z2 = np.empty((Z1.shape[1], Z2.shape[1], n_inner))
    for a in range(Z1.shape[1]):
        for b in range(Z2.shape[1]):
            z1z2[a, b] = np.bincount(inner, Z1[:, a] * Z2[:, b], minlength=n_inner)
    return NestedCrossProducts(
        inner=compute_crossproducts(X, y, Z1, inner, n_inner),
        outer=compute_crossproducts(X, y, Z2, outer, n_outer), z1z2=z1z2, parent=parent)


def _to_parent(arr: np.ndarray, ncp: NestedCrossProducts) -> np.ndarray:
    """Sum a ``(..., G1)`` array over the inner groups of each outer group -> ``(..., G2)``."""
    n_outer = ncp.outer.n_groups
    flat = arr.reshape(-1, arr.shape[-1])
    out = np.stack([np.bincount(ncp.parent, row, minlength=n_outer) for row in flat])
    return out.reshape(*arr.shape[:-1], n_outer)


def _factor(theta: np.ndarray, ncp: NestedCrossProducts):
    """``log|A|`` and ``S = [X y]'V^-1[X y]`` (relative ``V``) at ``theta``."""
    q1, q2 = ncp.blocks
    t1, t2 = split_theta(theta, ncp.blocks)
    T1, T2 = theta_to_factor(t1, q1), theta_to_factor(t2, q2)
    L1 = _chol(_sandwich(T1, ncp.inner.ztz) + np.eye(q1)[:, :, None])
    F = _forward(L1, _rmul(_tmul(T1, ncp.z1z2), T2))  # (q1, q2, G1)
    c1 = _forward(L1, _tmul(T1, ncp.inner.ztw))  # (q1, k, G1)
    Ft = F.transpose(1, 0, 2)
    A2 = _sandwich(T2, ncp.outer.ztz) + np.eye(q2)[:, :, None] - _to_parent(_bmm(Ft, F), ncp)
    L2 = _chol(A2)
    c2 = _forward(L2, _tmul(T2, ncp.outer.ztw) - _to_parent(_bmm(Ft, c1), ncp))
    logdet = 2.0 * (np.log(L1[np.arange(q1), np.arange(q1)]).sum()
                    + np.log(L2[np.arange(q2), np.arange(q2)]).sum())
    return logdet, ncp.inner.wtw - _gram(c1) - _gram(c2)


def nested_deviance(theta: np.ndarray, ncp: NestedCrossProducts, reml: bool) -> float:
    """Profiled deviance (REML criterion when ``reml``); inf where ``S`` is not PD."""
    p, n = ncp.inner.p, ncp.inner.n_obs
    logdet, S = _factor(theta, ncp)
    if not np.isfinite(logdet):
        return np.inf
    try:
        R = np.linalg.cholesky(S)
    except np.linalg.LinAlgError:
        return np.inf
    logdet_rx = 2.0 * np.log(np.diag(R)[:p]).sum()
    return _criterion(n, p, R[p, p] ** 2, logdet, logdet_rx, reml)


def nested_objective(ncp: NestedCrossProducts, reml: bool):
    """Deviance and central-difference gradient, for :func:`_lmm.minimize_deviance`."""

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        dev = nested_deviance(theta, ncp, reml)
        h = 1e-5 * np.maximum(1.0, np.abs(theta))
        grad = np.array([(nested_deviance(theta + h[k] * e, ncp, reml)
                          - nested_deviance(theta - h[k] * e, ncp, reml)) / (2 * h[k])
                         for k, e in enumerate(np.eye(len(theta)))])
        return dev, grad

    return fun


def nested_estimates(theta: np.ndarray, ncp: NestedCrossProducts, reml: bool):
    """``beta, vcov, cov_inner, cov_outer, sigma2, deviance`` at ``theta`` (lme4 conventions)."""
    p, n = ncp.inner.p, ncp.inner.n_obs
    S = _factor(theta, ncp)[1]
    R = np.linalg.cholesky(S)
    beta = np.linalg.solve(R[:p, :p].T, R[p, :p])
    sigma2 = R[p, p] ** 2 / (n - p if reml else n)
    covs = [sigma2 * (T @ T.T) for T in (theta_to_factor(t, q) for t, q in
                                         zip(split_theta(theta, ncp.blocks), ncp.blocks,
                                             strict=True))]
    vcov = sigma2 * np.linalg.inv(S[:p, :p])
    return beta, vcov, covs[0], covs[1], float(sigma2), nested_deviance(theta, ncp, reml)
