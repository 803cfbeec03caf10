"""`make bench`: the CLV pipeline against BG/NBD + Gamma-Gamma (lifetimes) on all 23,570 CDNOW customers.

    python tests/benchmark/clv_bench.py --btyd-venv DIR --out FILE [--seeds 0 1 2 3 4]

1. `flowline run clv` with the use case's default budget, timed end to end, no champion, once per
   seed in --seeds (the split's and the tuning's seed both set to it; default: the use case's own);
2. each run's package scores its test rows: every customer as of the end of calibration;
3. bgnbd_baseline.py, in its own venv, fits BG/NBD + Gamma-Gamma on the same calibration
   period and predicts the same holdout (once: it has no seed);
4. both are scored with flowline's own regression metrics (MAE, RMSE, Spearman,
   normalised Gini, totals) against the same actual holdout spend, joined by customer.

Writes JSON (a row per seed, and flowline's mean and standard error over the seeds) and prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from flowline.components.evaluate.evaluation import regression_metrics
from flowline.package.format import Package
from flowline.datasets import dataset_path
from flowline.use_case_loader import USE_CASES_DIR, load_use_case

HERE = Path(__file__).resolve().parent
SHOWN = ("mae", "rmse", "spearman", "gini", "total_error")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--btyd-venv", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", help="split and tuning seeds (default: the use case's)")
    args = parser.parse_args()
    use_case = load_use_case("clv")
    spec = use_case.transactions
    out = Path(args.out)
    folder = out.parent / "clv"
    folder.mkdir(parents=True, exist_ok=True)

    baseline_csv = folder / "bgnbd.csv"
    holdout_end = spec.calibration_end + timedelta(days=spec.horizon_days)
    started = time.monotonic()
    subprocess.run([str(Path(args.btyd_venv) / "bin" / "python"), str(HERE / "bgnbd_baseline.py"),
                    str(dataset_path(use_case.data.dataset)), "--calibration-end", spec.calibration_end.isoformat(),
                    "--holdout-end", holdout_end.isoformat(), "--out", str(baseline_csv)], check=True)
    baseline_wall = time.monotonic() - started
    baseline = pd.read_csv(baseline_csv, dtype={"customer_id": str})
    y = baseline["actual_spend"].to_numpy()
    scores = {"bgnbd_gamma_gamma": scored(y, baseline["predicted_spend"].to_numpy()),
              "zero_for_everyone": scored(y, np.zeros(len(y)))}
    scores["zero_for_everyone"]["spearman"] = None  # a rank correlation with a constant is undefined

    runs = [run_seed(seed, folder, baseline) for seed in (args.seeds or [use_case.split.seed])]
    result = {
        "use_case": "clv",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "customers": len(baseline),
        "protocol": {"calibration_end": spec.calibration_end.isoformat(), "holdout_end": holdout_end.isoformat(),
                     "training_cutoffs": [c.isoformat() for c in spec.training_cutoffs]},
        "flowline_seeds": runs,
        "flowline_mean_se": {name: mean_se([run["scores"][name] for run in runs]) for name in SHOWN},
        "scores": scores,
        "wall_seconds": {"bgnbd_gamma_gamma": round(baseline_wall, 1)},
    }
    out.write_text(json.dumps(result, indent=1))
    print(markdown(result, scores["bgnbd_gamma_gamma"]["total_actual"]))
    print(f"\n{out}")


def run_seed(seed: int, folder: Path, baseline: pd.DataFrame) -> dict:
    """`flowline run` of clv with split and tuning seed `seed`, scored on its test rows against `baseline`'s."""
    document = yaml.safe_load((USE_CASES_DIR / "clv.yaml").read_text())
    document["split"]["seed"] = document["tuning"]["seed"] = seed
    use_case_file = folder / f"clv-seed{seed}.yaml"
    use_case_file.write_text(yaml.safe_dump(document, sort_keys=False))
    use_case = load_use_case(use_case_file)
    summary_path = folder / f"flowline-summary-seed{seed}.json"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "flowline.pipelines.cli", "run", "--use-case", str(use_case_file),
                    "--no-champion", "--runs-dir", str(folder / "runs"), "--summary", str(summary_path)], check=True)
    wall = time.monotonic() - started
    summary = json.loads(summary_path.read_text())
    test = pd.read_parquet(next(Path(summary["run_dir"]).glob("*/split/test")))
    flowline = pd.DataFrame({"customer_id": test[use_case.transactions.entity_column].astype(str),
                             "flowline": Package.open(summary["package"]).predict(test),
                             "actual": test[use_case.label.column].to_numpy()})
    joined = flowline.merge(baseline, on="customer_id", how="outer", validate="one_to_one")
    if joined.isna().any().any() or not np.allclose(joined["actual"], joined["actual_spend"]):
        raise SystemExit("flowline's test rows and the baseline disagree on the customers or their holdout spend")
    return {"seed": seed, "scores": scored(joined["actual"].to_numpy(), joined["flowline"].to_numpy()),
            "wall_seconds": round(wall, 1), "model": summary["model"]}


def scored(y: np.ndarray, predictions: np.ndarray) -> dict:
    """flowline's regression metrics and the total's relative error."""
    metrics = regression_metrics(y, predictions)
    return {**metrics, "total_error": metrics["total_predicted"] / metrics["total_actual"] - 1}


def mean_se(values: list[float]) -> dict:
    """Mean and standard error of the mean over the seeds (the error is 0 for one seed)."""
    spread = float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
    return {"mean": float(np.mean(values)), "se": spread}


def markdown(result: dict, total_actual: float) -> str:
    lines = [f"| clv ({result['customers']} customers, actual total {total_actual:,.0f}) | MAE | RMSE | Spearman "
             f"| normalised Gini | total predicted | wall time |", "|---|---|---|---|---|---|---|"]
    for run in result["flowline_seeds"]:
        s = run["scores"]
        lines.append(f"| flowline, seed {run['seed']} | {s['mae']:.2f} | {s['rmse']:.2f} | {s['spearman']:.4f} | "
                     f"{s['gini']:.4f} | {s['total_predicted']:,.0f} ({s['total_error']:+.1%}) | "
                     f"{run['wall_seconds']:.0f} s |")
    m = result["flowline_mean_se"]
    lines.append(f"| flowline, mean ± SE | {m['mae']['mean']:.2f} ± {m['mae']['se']:.2f} | {m['rmse']['mean']:.2f} ± "
                 f"{m['rmse']['se']:.2f} | {m['spearman']['mean']:.4f} ± {m['spearman']['se']:.4f} | "
                 f"{m['gini']['mean']:.4f} ± {m['gini']['se']:.4f} | ({m['total_error']['mean']:+.1%} ± "
                 f"{m['total_error']['se']:.1%}) | |")
    for name, s in result["scores"].items():
        spearman = "n/a" if s["spearman"] is None else f"{s['spearman']:.4f}"
        wall = result["wall_seconds"].get(name)
        lines.append(f"| {name} | {s['mae']:.2f} | {s['rmse']:.2f} | {spearman} | {s['gini']:.4f} | "
                     f"{s['total_predicted']:,.0f} ({s['total_error']:+.1%}) | {'' if wall is None else f'{wall:.0f} s'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
