"""Linear mixed models for repeated measures: :func:`fit_mixed` and its :class:`MixedResult`.

Two engines give the same answers. The ``"fast"`` engine (:mod:`outcomes.models._lmm`,
:mod:`outcomes.models._lmm_nested`) profiles the (RE)ML deviance as lme4 does and handles one
grouping factor with a random intercept and any number of random slopes (unstructured
covariance), optionally nested in an outer factor (episodes within therapists). Everything else
(variance components through ``vc_formula``, or a fast fit that fails its convergence check) is
fitted with statsmodels' ``MixedLM``, trying optimizers until two agree and keeping the best
log-likelihood.
"""

from __future__ import annotations

import warnings as _warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from outcomes.errors import ConvergenceError, ModelError
from outcomes.models._results import tidy, wald_interval

__all__ = ["fit_mixed", "MixedResult"]

OPTIMIZERS: tuple[str, ...] = ("lbfgs", "bfgs", "powell", "nm", "cg")
SINGULAR_WARNING = (
    "boundary (singular) fit: a random-effect variance is estimated at (or near) zero; "
    "simplify the random effects (lme4: isSingular)"
)


@dataclass
class MixedResult:
    """A fitted linear mixed model.

    Attributes
    ----------
    coef : DataFrame
        Fixed effects indexed by patsy term name; columns ``estimate, se, ci_low, ci_high, p``.
    tidy : DataFrame
        The full tidy frame (``term, estimate, se, ci_low, ci_high, p, n, converged, warnings``).
    cov_re : DataFrame
        Random-effects covariance, labelled by the random terms (``Intercept``, slopes).
    scale : float
        Residual variance.
    loglik : float
        Log-likelihood as lme4 reports it (the REML one for REML fits).
    reml_criterion : float or None
        ``-2 * loglik`` of a REML fit (lme4's "REML criterion at convergence"); None for ML.
    converged, engine, n_obs, n_groups, reml, warnings
        Convergence flag, ``"fast"`` or ``"statsmodels"``, rows used, number of groups, fit
        criterion and messages for the reader.
    vcov : DataFrame
        Covariance matrix of the fixed effects.
    variance_components : Series
        Extra variance components (statsmodels ``vc_formula``); empty otherwise.
    cov_re_nested : DataFrame or None
        With ``nested_in``: random-effects covariance of the outer level (therapist).
    n_nested_groups : int or None
        With ``nested_in``: number of outer groups.
    """

    coef: pd.DataFrame
    tidy: pd.DataFrame
    cov_re: pd.DataFrame
    scale: float
    loglik: float
    converged: bool
    engine: str
    n_obs: int
    n_groups: int
    reml: bool
    vcov: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    variance_components: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    alpha: float = 0.05
    design_info: Any = field(default=None, repr=False)
    cov_re_nested: pd.DataFrame | None = None
    n_nested_groups: int | None = None

    @property
    def reml_criterion(self) -> float | None:
        return -2.0 * self.loglik if self.reml else None

    def summary(self) -> pd.DataFrame:
        """Return a copy of the full tidy frame."""
        return self.tidy.copy()

    def predict(self, newdata: pd.DataFrame) -> pd.DataFrame:
        """Population-level (fixed-effects only) predictions with model-based standard errors.

        Parameters
        ----------
        newdata : DataFrame
            Holds the columns the fixed-effects formula uses.

        Returns
        -------
        DataFrame
            Indexed like ``newdata``; columns ``estimate, se, ci_low, ci_high`` (Wald normal
            interval at ``1 - alpha``), ``se = sqrt(diag(X V X'))`` with ``V`` = :attr:`vcov`.
        """
        import patsy

        # categoricals are re-coded against the fitted levels, not newdata's own categories
        frame = newdata.apply(lambda c: c.astype(object)
                              if isinstance(c.dtype, pd.CategoricalDtype) else c)
        try:
            (X,) = patsy.build_design_matrices([self.design_info], frame,
                                               return_type="dataframe", NA_action="raise")
        except patsy.PatsyError as exc:
            raise ModelError(f"newdata cannot be used for prediction: {exc}") from None
        X = X[self.vcov.columns]
        est = X.to_numpy() @ self.coef["estimate"].to_numpy()
        se = np.sqrt(np.einsum("ij,jk,ik->i", X.to_numpy(), self.vcov.to_numpy(), X.to_numpy()))
        low, high = wald_interval(est, se, alpha=self.alpha)
        return pd.DataFrame({"estimate": est, "se": se, "ci_low": low, "ci_high": high},
                            index=newdata.index)


@dataclass
class _Design:
    frame: pd.DataFrame  # complete rows only
    y: np.ndarray
    X: pd.DataFrame
    Z: pd.DataFrame
    codes: np.ndarray
    n_groups: int
    dropped: int
    design_info: Any
    Z2: pd.DataFrame | None = None  # outer-level random terms (nested_in)
    outer_codes: np.ndarray | None = None
    n_outer: int = 0


def fit_mixed(
    data: pd.DataFrame,
    formula: str,
    groups: str,
    re_formula: str | None = None,
    reml: bool = True,
    *,
    engine: str = "auto",
    nested_in: str | None = None,
    nested_re_formula: str | None = None,
    vc_formula: dict[str, str] | None = None,
    allow_nonconverged: bool = False,
    optimizers: Sequence[str] = OPTIMIZERS,
    fit_kwargs: dict[str, Any] | None = None,
    alpha: float = 0.05,
) -> MixedResult:
    """Fit a linear mixed model with random effects per level of ``groups``.

    Parameters
    ----------
    data : DataFrame
        One row per observation (e.g. visit); not modified.
    formula : str
        Fixed effects, patsy syntax (``"score ~ week * C(arm)"``).
    groups : str
        Column naming the grouping factor (episode or patient).
    re_formula : str, optional
        Random terms per group, statsmodels style: None is a random intercept, ``"~week"`` a
        random intercept and slope (correlated), ``"~week + week2"`` two slopes.
    reml : bool
        REML (default) or maximum likelihood.
    engine : {"auto", "fast", "statsmodels"}
        ``"auto"`` uses the fast engine when the design allows it and statsmodels otherwise;
        ``"fast"`` raises :class:`ModelError` if it cannot be used.
    nested_in : str, optional
        Column of an outer grouping factor that ``groups`` is nested in (therapist), lme4's
        ``(re | therapist/episode)``: ``groups`` is then identified within ``nested_in``.
        Fitted exactly by the fast engine; the statsmodels fallback (variance components)
        exists only for a random intercept at the inner level (``re_formula=None``).
    nested_re_formula : str, optional
        Random terms per ``nested_in`` group; None is a random intercept.
    vc_formula : dict, optional
        statsmodels variance components (e.g. episodes nested in a therapist ``groups``:
        ``{"episode": "0 + C(episode)"}``); always fitted with statsmodels. As in statsmodels,
        ``groups`` then has no random intercept unless ``re_formula="1"`` is given.
    allow_nonconverged : bool
        Return a fit that failed its convergence check, marked ``converged=False`` with a
        warning, instead of raising :class:`ConvergenceError`.
    optimizers : sequence of str
        statsmodels optimizers, tried in order until two of them converge cleanly to the same
        log-likelihood (within 1e-4); the converged fit with the best log-likelihood is kept.
    fit_kwargs : dict, optional
        Extra keywords for ``MixedLM.fit`` (e.g. ``maxiter``).
    alpha : float
        1 - confidence level of the intervals.

    Returns
    -------
    MixedResult
        ``.coef`` (``estimate, se, ci_low, ci_high, p`` by term), ``.cov_re``, ``.scale``,
        ``.loglik``, ``.reml_criterion``, ``.converged``, ``.engine``, ``.predict(newdata)``.

    Raises
    ------
    ModelError
        Unknown column, formula error, too few rows or groups, rank-deficient fixed effects.
    ConvergenceError
        No optimizer converged (unless ``allow_nonconverged``).

    Notes
    -----
    Model: ``y_i = X_i beta + Z_i b_i + e_i``, ``b_i ~ N(0, Sigma)``, ``e_i ~ N(0, sigma^2 I)``
    (plus ``Z2_t b2_t`` per outer group with ``nested_in``). The fast engine minimises the
    profiled deviance of Bates et al. (2015), eqs. 34-42, over the relative covariance factor
    (BFGS with an analytic gradient, then Newton steps; central differences for the nested
    design), from per-group cross-products computed once, so time grows linearly with rows.
    It follows lme4's conventions: ``vcov(beta) = sigma^2 (RX'RX)^-1`` and the (REML)
    log-likelihood as lme4 prints it. statsmodels' standard errors invert its full Hessian and
    differ from lme4's slightly (up to 1.3 % in the test designs). Wald intervals and p-values
    use the normal distribution. A variance at its boundary (0) is reported as lme4's
    "boundary (singular) fit" warning. Checked against lme4 1.1-31 on sleepstudy (Bates et al.
    2015: fixed 251.41 (6.82), 10.47 (1.55), REML criterion 1743.6), on synthetic unbalanced and
    nested designs and on small random-slope SDs near the boundary (0 to 0.3, correlations
    -0.9 to 0.9) through Rscript, and against statsmodels on several designs
    (``tests/test_mixed.py``, ``tests/test_mixed_r.py``).

    References
    ----------
    Bates D, Maechler M, Bolker B, Walker S (2015). Fitting linear mixed-effects models using
    lme4. J Stat Softw 67(1):1-48.
    """
    if engine not in ("auto", "fast", "statsmodels"):
        raise ModelError(f"engine must be 'auto', 'fast' or 'statsmodels', not {engine!r}")
    design = _build_design(data, formula, groups, re_formula, nested_in, nested_re_formula)
    notes = [f"{design.dropped} rows with missing values dropped"] if design.dropped else []
    sm_args = (optimizers, fit_kwargs or {}, allow_nonconverged, alpha)
    if nested_in is not None:
        if vc_formula is not None:
            raise ModelError("give either nested_in or vc_formula, not both")
        return _fit_nested(design, formula, groups, re_formula, nested_in, nested_re_formula,
                           reml, engine, notes, sm_args)
    if vc_formula is not None and engine == "fast":
        raise ModelError("engine='fast' does not handle vc_formula; use engine='auto'")
    if engine == "statsmodels" or vc_formula is not None:
        return _fit_statsmodels(design, formula, groups, re_formula, reml, vc_formula,
                                *sm_args, notes)
    result = _fit_fast(design, reml, alpha, notes, strict=engine == "fast",
                       allow_nonconverged=allow_nonconverged)
    if result is not None:
        return result
    notes.append("fast engine failed its convergence check; refitted with statsmodels")
    return _fit_statsmodels(design, formula, groups, re_formula, reml, None, *sm_args, notes)


def _build_design(
    data: pd.DataFrame, formula: str, groups: str, re_formula: str | None,
    nested_in: str | None = None, nested_re_formula: str | None = None,
) -> _Design:
    """Design matrices on the rows complete in every variable the model uses.

    Incomplete rows are dropped before the final patsy pass, so a category seen only in dropped
    rows does not become an all-zero column.
    """
    if not isinstance(data, pd.DataFrame):
        raise ModelError("data must be a pandas DataFrame")
    for name, col in (("groups", groups), ("nested_in", nested_in)):
        if col is not None and col not in data.columns:
            raise ModelError(f"{name} column {col!r} is not in data; pass the grouping column name")
    names = f"{formula} {re_formula or ''} {nested_re_formula or ''}"
    grouping = [c for c in (nested_in, groups) if c is not None]
    frame = _as_categories(data.reset_index(drop=True), names)
    y, X, Z, Z2 = _model_matrices(frame, formula, re_formula, nested_re_formula)
    keep = X.index.intersection(Z.index).intersection(Z2.index)
    keep = keep[frame.loc[keep, grouping].notna().all(axis=1).to_numpy()]
    dropped = len(frame) - len(keep)
    if dropped:
        frame = _as_categories(frame.loc[keep].reset_index(drop=True), names)
        y, X, Z, Z2 = _model_matrices(frame, formula, re_formula, nested_re_formula)
    if y.shape[1] != 1:
        raise ModelError(f"formula {formula!r} must have exactly one outcome column")
    # nested: an inner group is a (nested_in, groups) pair, as lme4's therapist/episode
    codes = frame.groupby(grouping, sort=True, observed=True).ngroup().to_numpy()
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    _check_design(X, n_groups, formula)
    design = _Design(frame=frame, y=y.to_numpy()[:, 0], X=X, Z=Z, codes=codes,
                     n_groups=n_groups, dropped=dropped, design_info=X.design_info)
    if nested_in is not None:
        outer, uniques = pd.factorize(frame[nested_in], sort=True)
        design.Z2, design.outer_codes, design.n_outer = Z2, outer, len(uniques)
    return design


def _model_matrices(
    frame: pd.DataFrame, formula: str, re_formula: str | None, nested_re_formula: str | None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    import patsy

    env = patsy.EvalEnvironment([{"C": _categorical, "np": np}])
    try:
        y, X = patsy.dmatrices(formula, frame, eval_env=env, return_type="dataframe",
                               NA_action="drop")
        Z, Z2 = (patsy.dmatrix(f or "1", frame, eval_env=env, return_type="dataframe",
                               NA_action="drop") for f in (re_formula, nested_re_formula))
    except patsy.PatsyError as exc:
        raise ModelError(f"formula {formula!r} / re_formula {re_formula!r} / nested_re_formula "
                         f"{nested_re_formula!r}: {exc}") from None
    return y, X, Z, Z2


def _categorical(data: Any, contrast: Any = None, levels: Any = None) -> Any:
    """patsy's ``C()``, except that a plain ``C(x)`` of a pandas categorical passes it through.

    patsy reads a categorical's codes directly, but once ``C()`` has boxed it, it converts the
    values one Python call per row. Passing the categorical through gives the same levels,
    coding and term names (which come from the formula text) at array speed.
    """
    import patsy

    if contrast is None and levels is None and isinstance(
            getattr(data, "dtype", None), pd.CategoricalDtype):
        return data
    return patsy.builtins.C(data, contrast, levels)


def _as_categories(frame: pd.DataFrame, formulas: str) -> pd.DataFrame:
    """Text columns the formulas name as pandas categoricals, without unused categories.

    Levels are sorted as patsy sorts text levels; an existing categorical keeps its order.
    """
    import re

    names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", formulas))
    for col in (c for c in frame.columns if c in names):
        if isinstance(frame[col].dtype, pd.CategoricalDtype):
            frame[col] = frame[col].cat.remove_unused_categories()
        elif frame[col].dtype == object or pd.api.types.is_string_dtype(frame[col].dtype):
            try:
                frame[col] = pd.Categorical(frame[col])
            except TypeError:  # unsortable mixed values: leave them to patsy
                pass
    return frame


def _check_design(X: pd.DataFrame, n_groups: int, formula: str) -> None:
    n, p = X.shape
    if n_groups < 2:
        raise ModelError(f"groups: need at least 2 groups with complete rows, found {n_groups}")
    if n <= p:
        raise ModelError(f"formula {formula!r}: {n} complete rows for {p} fixed effects")
    if np.linalg.matrix_rank(X.to_numpy()) < p:
        raise ModelError(f"formula {formula!r}: fixed-effects design is rank deficient "
                         "(a constant or collinear column); drop the redundant term")


def _fit_fast(
    design: _Design, reml: bool, alpha: float, notes: list[str], *, strict: bool,
    allow_nonconverged: bool,
) -> MixedResult | None:
    """Fit with the fast engine; None when its convergence check fails and a fallback may run."""
    from outcomes.models import _lmm

    cp = _lmm.compute_crossproducts(design.X.to_numpy(), design.y, design.Z.to_numpy(),
                                    design.codes, design.n_groups)
    theta, ok, message = _lmm.optimize_theta(cp, reml)
    if not ok and not strict:
        return None
    if not ok and not allow_nonconverged:
        raise ConvergenceError(f"fast engine did not converge ({message}); try engine='statsmodels'")
    fit = _lmm.estimates(theta, cp, reml)
    extra = [] if ok else [f"NOT CONVERGED ({message}): estimates are not an answer"]
    if _lmm.is_singular(theta, [cp.q]):
        extra.append(SINGULAR_WARNING)
    fe, re = list(design.X.columns), list(design.Z.columns)
    return _assemble(design, fe, fit.beta, fit.vcov, pd.DataFrame(fit.cov_re, re, re), fit.scale,
                     -fit.deviance / 2.0, ok, "fast", reml, alpha, notes + extra)


def _fit_nested(
    design: _Design, formula: str, groups: str, re_formula: str | None, nested_in: str,
    nested_re_formula: str | None, reml: bool, engine: str, notes: list[str], sm_args: tuple,
) -> MixedResult:
    """Two nested levels: the fast engine, or statsmodels variance components as fallback."""
    allow_nonconverged, alpha = sm_args[2], sm_args[3]
    if engine != "statsmodels":
        # inner random slopes: statsmodels has no equivalent model to fall back on
        strict = engine == "fast" or re_formula is not None
        result = _fit_fast_nested(design, reml, alpha, notes, strict=strict,
                                  allow_nonconverged=allow_nonconverged)
        if result is not None:
            return result
        notes = [*notes, "fast engine failed its convergence check; refitted with statsmodels"]
    if re_formula is not None:
        raise ModelError("engine='statsmodels' cannot fit correlated random slopes at the inner "
                         "level of a nested design (re_formula); use engine='auto'")
    labels = list(design.Z2.columns)
    sm = _fit_statsmodels(design, formula, nested_in, nested_re_formula or "1", reml,
                          {groups: f"0 + C({groups})"}, *sm_args, notes, re_labels=labels)
    inner = pd.DataFrame([[sm.variance_components[groups]]], ["Intercept"], ["Intercept"])
    return replace(sm, cov_re=inner, cov_re_nested=sm.cov_re, n_nested_groups=design.n_outer,
                   variance_components=pd.Series(dtype=float))


def _fit_fast_nested(
    design: _Design, reml: bool, alpha: float, notes: list[str], *, strict: bool,
    allow_nonconverged: bool,
) -> MixedResult | None:
    """Nested fast fit; None when its convergence check fails and a fallback may run."""
    from outcomes.models import _lmm, _lmm_nested

    ncp = _lmm_nested.compute_nested_crossproducts(
        design.X.to_numpy(), design.y, design.Z.to_numpy(), design.Z2.to_numpy(), design.codes,
        design.outer_codes, design.n_groups, design.n_outer)
    theta, ok, message = _lmm.minimize_deviance(_lmm_nested.nested_objective(ncp, reml),
                                                ncp.blocks)
    if not ok and not strict:
        return None
    if not ok and not allow_nonconverged:
        raise ConvergenceError(f"fast engine did not converge on the nested design ({message})")
    beta, vcov, cov1, cov2, scale, dev = _lmm_nested.nested_estimates(theta, ncp, reml)
    extra = [] if ok else [f"NOT CONVERGED ({message}): estimates are not an answer"]
    if _lmm.is_singular(theta, ncp.blocks):
        extra.append(SINGULAR_WARNING)
    re1, re2 = list(design.Z.columns), list(design.Z2.columns)
    result = _assemble(design, list(design.X.columns), beta, vcov, pd.DataFrame(cov1, re1, re1),
                       scale, -dev / 2.0, ok, "fast", reml, alpha, notes + extra)
    return replace(result, cov_re_nested=pd.DataFrame(cov2, re2, re2),
                   n_nested_groups=design.n_outer)


def _assemble(
    design: _Design, fe: list[str], beta: np.ndarray, vcov: np.ndarray, cov_re: pd.DataFrame,
    scale: float, loglik: float, converged: bool, engine: str, reml: bool, alpha: float,
    notes: list[str], vcomp: pd.Series | None = None,
) -> MixedResult:
    frame = tidy(fe, beta, np.sqrt(np.diag(vcov)), n=len(design.y), converged=converged,
                 warnings=notes, alpha=alpha)
    coef = frame.set_index("term")[["estimate", "se", "ci_low", "ci_high", "p"]]
    for message in notes:
        if not converged or message == SINGULAR_WARNING:
            _warnings.warn(f"fit_mixed: {message}", RuntimeWarning, stacklevel=3)
    return MixedResult(
        coef=coef, tidy=frame, cov_re=cov_re, scale=float(scale), loglik=float(loglik),
        converged=converged, engine=engine, n_obs=len(design.y), n_groups=design.n_groups,
        reml=reml, vcov=pd.DataFrame(vcov, fe, fe), warnings=list(notes),
        variance_components=vcomp if vcomp is not None else pd.Series(dtype=float),
        alpha=alpha, design_info=design.design_info,
    )


def _fit_statsmodels(
    design: _Design, formula: str, groups: str, re_formula: str | None, reml: bool,
    vc_formula: dict[str, str] | None, optimizers: Sequence[str], fit_kwargs: dict[str, Any],
    allow_nonconverged: bool, alpha: float, notes: list[str], re_labels: list[str] | None = None,
) -> MixedResult:
    """statsmodels MixedLM; optimizers until two agree; best converged log-likelihood wins."""
    from statsmodels.regression.mixed_linear_model import MixedLM

    if not optimizers:
        raise ModelError("optimizers: give at least one statsmodels optimizer name")
    model = MixedLM.from_formula(formula, design.frame, groups=design.frame[groups],
                                 re_formula=re_formula, vc_formula=vc_formula)
    attempts = []
    for method in optimizers:
        attempts.append(_attempt(model, method, reml, fit_kwargs))
        if _settled(attempts):
            break
    good = [a for a in attempts if a["ok"]]
    best = max(good or [a for a in attempts if a["result"] is not None],
               key=lambda a: a["result"].llf, default=None)
    tried = ", ".join(f"{a['method']}: {a['problem'] or 'ok'}" for a in attempts)
    if best is None or (not good and not allow_nonconverged):
        raise ConvergenceError(f"statsmodels MixedLM did not converge with any optimizer ({tried})")
    res, extra = best["result"], list(best["boundary"])
    if len(attempts) > 2 or any(not a["ok"] for a in attempts):
        extra.append(f"statsmodels optimizers tried ({tried}); kept {best['method']}")
    if not good:
        extra.append(f"NOT CONVERGED ({best['problem']}): estimates are not an answer")
    fe = list(design.X.columns)
    # with vc_formula and no re_formula statsmodels fits no random intercept for `groups`
    re = (re_labels or list(design.Z.columns)) if np.asarray(res.cov_re).size else []
    cov_re = pd.DataFrame(np.asarray(res.cov_re).reshape(len(re), len(re)), re, re)
    vcov = res.cov_params().loc[fe, fe].to_numpy()
    vcomp = pd.Series(np.asarray(res.vcomp, float), index=list(model.exog_vc.names)) \
        if vc_formula else None
    return _assemble(design, fe, res.fe_params.loc[fe].to_numpy(), vcov, cov_re, res.scale,
                     res.llf, bool(good), "statsmodels", reml, alpha, notes + extra, vcomp)


def _settled(attempts: list[dict[str, Any]]) -> bool:
    """Two optimizers converged cleanly to the same log-likelihood (within 1e-4).

    statsmodels' first optimizer can stop cleanly at a wrong point (seen with lbfgs on a nested
    REML fit: 0.7 log-likelihood units short, no warning), so one clean fit is not enough.
    """
    good = [a["result"].llf for a in attempts if a["ok"]]
    return len(good) >= 2 and max(good) - sorted(good)[-2] <= 1e-4


def _attempt(model: Any, method: str, reml: bool, fit_kwargs: dict[str, Any]) -> dict[str, Any]:
    """One statsmodels fit; records convergence problems and boundary warnings separately."""
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always")
        try:
            res = model.fit(reml=reml, method=method, **fit_kwargs)
        except (np.linalg.LinAlgError, ValueError) as exc:
            return {"method": method, "result": None, "ok": False, "problem": type(exc).__name__,
                    "boundary": []}
    messages = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    boundary = [m for m in messages if "boundary" in m]
    trouble = [m for m in messages if "boundary" not in m]
    problem = None
    if not res.converged or trouble or not np.isfinite(res.llf):
        problem = (trouble[0] if trouble else "optimizer did not converge")[:80]
    return {"method": method, "result": res, "ok": problem is None, "problem": problem,
            "boundary": [SINGULAR_WARNING] if boundary else []}
