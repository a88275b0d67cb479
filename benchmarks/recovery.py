"""Does the primary analysis recover a known PRI effect? Bias, SE, 95 % CI coverage, gate pass rate.

Each replicate draws a synthetic export with a known PRI-vs-traditional effect on the change at
planned discharge (``outcomes.synthetic.generate_export``), builds episodes the way the toolkit
does, and runs

* ``naive``: completers, unadjusted difference in change (what a dashboard shows), and
* ``primary``: :func:`outcomes.models.primary_analysis` (ATE IPTW x inverse probability of
  completion, regression with therapist fixed effects, leave-one-therapist-out jackknife SE), and
  on the first ``--boot-replicates`` replicates of the assumption-holding scenarios also
* ``primary_boot``: the same estimate with the cluster-bootstrap SE (``se="bootstrap"``:
  therapists resampled, propensity and dropout models refitted each time).

Scenarios (``outcomes synth`` options in brackets): ``null`` (no effect, the DGP's strong
confounding by indication: the naive bias shows how strong), ``uniform`` (-1 NPRS / +4 LEFS for
everyone), ``subgroup`` (-2 NPRS / +8 LEFS only with prior PT [effect_subgroup=prior_pt];
overall, per-stratum and interaction truth; ``primary_analysis(modifier="prior_pt")``),
``therapist`` (PRI-trained therapists 0.8 NPRS better [therapist_shift=-0.8]), ``small`` (200
episodes, 5 therapists), ``trend`` (secular trend -1.5 NPRS with rising PRI adoption
[secular_trend=-1.5]), and ``mnar`` (dropout depends on the unobserved discharge change
[mnar_dropout=1.5]), where the estimator is expected to fail. Truth per replicate: the mean of
the episodes' own potential-outcome differences over the analysed population (pri and
traditional episodes that are not open), from the truth the generator returns.

Targets where the assumptions hold (null, uniform, subgroup, therapist, small): primary coverage
93-97 %, |bias| < 10 % of the mean SE, and the interaction (``difference``) covering its truth in
93-97 %. ``trend`` has an unmeasured confounder (calendar time) and ``mnar`` missing-not-at-random
dropout, so there the script prints how far the estimator is off, and for ``mnar`` how the
missing-data sensitivity table (``outcomes.models.missing_data_sensitivity``) moves against the
same seeds without MNAR. Usage::

    python benchmarks/recovery.py --replicates 200 --episodes 3000 --processes 2
"""

from __future__ import annotations

import os

# one BLAS thread per process: the machine is shared and oversubscription makes IRLS 3x slower
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402
from multiprocessing import Pool  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

UNIFORM = {"nprs": -1.0, "lefs": 4.0}
#: name -> generate_export keyword arguments (``effects`` in points on the change).
SCENARIOS = {
    "null": {"effects": {"nprs": 0.0, "lefs": 0.0}},
    "uniform": {"effects": UNIFORM},
    "subgroup": {"effects": {"nprs": -2.0, "lefs": 8.0}, "effect_subgroup": "prior_pt"},
    "therapist": {"effects": UNIFORM, "therapist_shift": -0.8},
    "small": {"effects": UNIFORM, "n_episodes": 200, "n_therapists": 5},
    "trend": {"effects": UNIFORM, "secular_trend": -1.5},
    "mnar": {"effects": UNIFORM, "mnar_dropout": 1.5},
}
#: Scenarios whose assumptions the primary analysis makes (the targets apply to these).
ASSUMPTIONS_HOLD = ("null", "uniform", "subgroup", "therapist", "small")
#: Scenarios where the bootstrap SE is compared with the jackknife.
BOOT_SCENARIOS = ("null", "uniform", "small")
NUMERIC = ("nprs", "lefs", "psfs", "groc", "age", "symptom_duration_weeks", "prior_pt",
           "prior_injection", "surgery_recommended")
SENS_COVARIATES = ("age", "symptom_duration_weeks", "prior_pt", "prior_injection",
                   "surgery_recommended")


def episodes_from_export(visits: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Typed visits and their episodes, as ingest + build_episodes would give them."""
    from outcomes.episodes import build_episodes
    from outcomes.ingest.techniques import map_techniques

    v = visits.assign(visit_date=pd.to_datetime(visits["visit_date"]),
                      **{c: visits[c].astype(float) for c in NUMERIC})
    tech = map_techniques(v["technique_notes"])
    tech = tech.assign(visit_id=v.loc[tech["row"], "visit_id"].to_numpy())
    return build_episodes(v, tech), v


def true_effects(truth: dict, outcome: str) -> dict[str, float]:
    """Mean potential-outcome difference over the analysed population, overall and per stratum."""
    ep = truth["episodes"]
    ep = ep[ep["arm"].isin(["pri", "traditional"]) & ep["status"].ne("open")]
    d = ep[f"{outcome}_change_if_pri"] - ep[f"{outcome}_change_if_traditional"]
    out = {"overall": float(d.mean())}
    if "in_subgroup" in ep:
        inside = ep["in_subgroup"].to_numpy(bool)
        out.update(yes=float(d[inside].mean()), no=float(d[~inside].mean()))
        out["difference"] = out["yes"] - out["no"]
    return out


def _rows(res, truth: dict, base: dict) -> list[dict]:
    """Tidy rows of one analysis: overall naive/primary, and the strata when there are any."""
    from outcomes.models import diagnostics_gate

    gate = diagnostics_gate(res.iptw).interpretable
    method_of = {"naive": "naive", "primary": "primary" if res.se_method == "jackknife"
                 else "primary_boot"}
    rows = [{**base, "estimand": "overall", "method": method_of[r.method],
             "truth": truth["overall"], "estimate": r.estimate, "se": r.se, "ci_low": r.ci_low,
             "ci_high": r.ci_high, "gate": gate} for r in res.effects.itertuples()]
    for r in (res.modification.itertuples() if res.modification is not None else []):
        key = "difference" if r.stratum == "difference" else r.stratum.rsplit("= ", 1)[-1]
        g = res.gates.get(r.stratum)
        rows.append({**base, "estimand": key, "method": method_of["primary"],
                     "truth": truth[key], "estimate": r.estimate, "se": r.se,
                     "ci_low": r.ci_low, "ci_high": r.ci_high,
                     "gate": gate if g is None else bool(g.interpretable)})
    return rows


def run_replicate(args: tuple) -> list[dict]:
    """One seeded export; the analyses for NPRS and LEFS (failures recorded, not raised)."""
    from outcomes.errors import OutcomesError
    from outcomes.models import primary_analysis
    from outcomes.synthetic import generate_export

    scenario, seed, n_episodes, boot, n_boot = args
    kw = dict(SCENARIOS[scenario])
    visits, truth = generate_export(kw.pop("n_episodes", n_episodes), seed=seed, **kw)
    episodes, v = episodes_from_export(visits)
    modifier = "prior_pt" if "effect_subgroup" in kw else None
    rows = []
    for outcome in kw["effects"]:
        base = {"scenario": scenario, "seed": seed, "outcome": outcome}
        tr = true_effects(truth, outcome)
        try:
            res = primary_analysis(episodes, v, outcome, modifier=modifier, progress=False)
            rows += _rows(res, tr, base)
            if boot:  # the jackknife on the same replicates, for a like-for-like comparison
                rows += [{**r, "method": "primary_same_reps"} for r in rows
                         if r["outcome"] == outcome and r["method"] == "primary"
                         and r["estimand"] == "overall"]
                res = primary_analysis(episodes, v, outcome, se="bootstrap", n_boot=n_boot,
                                       seed=seed, progress=False)
                rows += [r for r in _rows(res, tr, base) if r["method"] == "primary_boot"]
        except OutcomesError as exc:  # e.g. an arm with one therapist in a small clinic
            rows.append({**base, "estimand": "overall", "method": "failed",
                         "error": str(exc).splitlines()[0]})
    return rows


def run_sensitivity(args: tuple) -> list[dict]:
    """The missing-data sensitivity table (NPRS) of one seeded export, MAR or MNAR."""
    from outcomes.models import missing_data_sensitivity
    from outcomes.synthetic import generate_export

    scenario, seed, n_episodes = args
    kw = dict(SCENARIOS[scenario])
    visits, truth = generate_export(n_episodes, seed=seed, **kw)
    episodes, v = episodes_from_export(visits)
    data = episodes[episodes["arm"].isin(["pri", "traditional"]) & episodes["status"].ne("open")]
    table = missing_data_sensitivity(data, "nprs_discharge", "arm", "nprs_intake",
                                     SENS_COVARIATES, last="nprs_last", visits=v,
                                     cluster="therapist_id", n_imputations=10, seed=seed,
                                     reference="traditional")
    tr = true_effects(truth, "nprs")["overall"]
    return [{"scenario": scenario, "seed": seed, "method": r.method, "estimate": r.estimate,
             "error": r.estimate - tr, "n_missing": r.n_missing} for r in table.itertuples()]


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Bias, RMSE, empirical SD, mean SE, coverage and gate pass rate per cell."""
    r = results[results["method"] != "failed"]
    r = r.assign(err=r["estimate"] - r["truth"],
                 covered=(r["ci_low"] <= r["truth"]) & (r["truth"] <= r["ci_high"]))
    g = r.groupby(["scenario", "outcome", "estimand", "method"], sort=False)
    out = pd.DataFrame({
        "R": g.size(),
        "truth": g["truth"].mean(),
        "bias": g["err"].mean(),
        "rmse": np.sqrt(g["err"].apply(lambda e: np.mean(e**2))),
        "emp_sd": g["estimate"].std(),
        "mean_se": g["se"].mean(),
        "coverage": g["covered"].mean(),
        "gate_pass": g["gate"].mean(),
    })
    out["bias/se"] = out["bias"] / out["mean_se"]
    out["cov_mcse"] = np.sqrt(out["coverage"] * (1 - out["coverage"]) / out["R"])
    return out


def check_targets(table: pd.DataFrame) -> pd.DataFrame:
    """Primary (jackknife) rows of the scenarios whose assumptions hold, against the targets."""
    prim = table.xs("primary", level="method")
    prim = prim[prim.index.get_level_values("scenario").isin(ASSUMPTIONS_HOLD)]
    return pd.DataFrame({"coverage_93_97": prim["coverage"].between(0.93, 0.97),
                         "abs_bias_lt_0.1se": prim["bias"].abs() < 0.1 * prim["mean_se"]})


def _jobs(a) -> list[tuple]:
    return [(s, a.seed + i, a.episodes, s in BOOT_SCENARIOS and i < a.boot_replicates, a.n_boot)
            for s in a.scenarios for i in range(a.replicates)]


def _print_tables(results: pd.DataFrame, sens: pd.DataFrame | None) -> None:
    table = summarize(results)
    with pd.option_context("display.width", 160, "display.float_format", "{:.4f}".format,
                           "display.max_rows", 500):
        print(table.to_string())
        failed = results[results["method"] == "failed"]
        if len(failed):
            print("\nfailed analyses (not in the table):")
            print(failed.groupby(["scenario", "outcome", "error"]).size().to_string())
        print("\ntargets (primary, jackknife; scenarios whose assumptions hold):")
        print(check_targets(table).to_string())
        if sens is not None and len(sens):
            print("\nmissing-data sensitivity table (NPRS), mean over the same seeds; error ="
                  " estimate - truth:")
            s = sens.groupby(["method", "scenario"], sort=False)[["estimate", "error",
                                                                   "n_missing"]].mean()
            print(s.unstack("scenario").to_string())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--replicates", type=int, default=200, help="replicates per scenario")
    ap.add_argument("--episodes", type=int, default=3000, help="episodes per synthetic export")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--seed", type=int, default=20260, help="first seed")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS),
                    help="comma-separated subset of " + ", ".join(SCENARIOS))
    ap.add_argument("--boot-replicates", type=int, default=25,
                    help="replicates of " + ", ".join(BOOT_SCENARIOS) + " also run with the"
                         " bootstrap SE (about n_boot times slower than the jackknife)")
    ap.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples")
    ap.add_argument("--sensitivity-replicates", type=int, default=20,
                    help="replicates of uniform (MAR) and mnar run through the missing-data "
                         "sensitivity table")
    ap.add_argument("--out", default=None, help="optional CSV of per-replicate results")
    a = ap.parse_args()
    a.scenarios = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    unknown = set(a.scenarios) - set(SCENARIOS)
    if unknown:
        ap.error(f"unknown scenario(s) {sorted(unknown)}")
    t0 = time.perf_counter()
    sens_jobs = [(s, a.seed + i, a.episodes) for s in ("uniform", "mnar")
                 for i in range(a.sensitivity_replicates) if "mnar" in a.scenarios]
    with Pool(a.processes) as pool:
        rows = [row for rep in pool.imap_unordered(run_replicate, _jobs(a), chunksize=2)
                for row in rep]
        sens = [row for rep in pool.imap_unordered(run_sensitivity, sens_jobs) for row in rep]
    results = pd.DataFrame(rows)
    if a.out:
        results.to_csv(a.out, index=False)
    print(f"recovery: {a.replicates} replicates per scenario, {a.episodes} episodes each (small:"
          f" 200 episodes, 5 therapists), bootstrap SE ({a.n_boot} resamples) on the first"
          f" {a.boot_replicates} replicates of {', '.join(BOOT_SCENARIOS)}, {a.processes}"
          f" processes, {time.perf_counter() - t0:.0f} s")
    _print_tables(results, pd.DataFrame(sens) if sens else None)


if __name__ == "__main__":
    main()
