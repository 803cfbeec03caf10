"""`make bench`: the CLV pipeline against BG/NBD + Gamma-Gamma (lifetimes) on all 23,570 CDNOW customers.

    python tests/benchmark/clv_bench.py --btyd-venv DIR --out FILE

1. `flowline run clv` with the use case's default budget, timed end to end, no champion;
2. the run's package scores its test rows: every customer as of the end of calibration;
3. bgnbd_baseline.py, in its own venv, fits BG/NBD + Gamma-Gamma on the same calibration
   period and predicts the same holdout;
4. both are scored with flowline's own regression metrics (MAE, RMSE, Spearman,
   normalised Gini, totals) against the same actual holdout spend, joined by customer.

Writes JSON and prints a Markdown table.
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

from flowline.components.evaluate.evaluation import regression_metrics
from flowline.package.format import Package
from flowline.datasets import dataset_path
from flowline.use_case import load_use_case

HERE = Path(__file__).resolve().parent
SHOWN = ("mae", "rmse", "spearman", "gini", "total_predicted", "total_actual")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--btyd-venv", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    use_case = load_use_case("clv")
    spec = use_case.transactions
    out = Path(args.out)
    folder = out.parent / "clv"
    folder.mkdir(parents=True, exist_ok=True)

    summary_path = folder / "flowline-summary.json"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "flowline.pipelines.cli", "run", "clv", "--no-champion",
                    "--runs-dir", str(folder / "runs"), "--summary", str(summary_path)], check=True)
    flowline_wall = time.monotonic() - started
    summary = json.loads(summary_path.read_text())
    test = pd.read_parquet(next(Path(summary["run_dir"]).glob("*/split/test")))
    flowline = pd.DataFrame({"customer_id": test[spec.entity_column].astype(str),
                             "flowline": Package.open(summary["package"]).predict(test),
                             "actual": test[use_case.label.column].to_numpy()})

    baseline_csv = folder / "bgnbd.csv"
    holdout_end = spec.calibration_end + timedelta(days=spec.horizon_days)
    started = time.monotonic()
    subprocess.run([str(Path(args.btyd_venv) / "bin" / "python"), str(HERE / "bgnbd_baseline.py"),
                    str(dataset_path(use_case.data.dataset)), "--calibration-end", spec.calibration_end.isoformat(),
                    "--holdout-end", holdout_end.isoformat(), "--out", str(baseline_csv)], check=True)
    baseline_wall = time.monotonic() - started
    baseline = pd.read_csv(baseline_csv, dtype={"customer_id": str})
    joined = flowline.merge(baseline, on="customer_id", how="outer", validate="one_to_one")
    if joined.isna().any().any() or not np.allclose(joined["actual"], joined["actual_spend"]):
        raise SystemExit("flowline's test rows and the baseline disagree on the customers or their holdout spend")

    y = joined["actual"].to_numpy()
    predictions = {"flowline": joined["flowline"].to_numpy(), "bgnbd_gamma_gamma": joined["predicted_spend"].to_numpy(),
                   "zero_for_everyone": np.zeros(len(y))}
    scores = {name: regression_metrics(y, values) for name, values in predictions.items()}
    scores["zero_for_everyone"]["spearman"] = None  # a rank correlation with a constant is undefined
    result = {
        "use_case": "clv",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "customers": len(joined),
        "protocol": {"calibration_end": spec.calibration_end.isoformat(), "holdout_end": holdout_end.isoformat(),
                     "training_cutoffs": [c.isoformat() for c in spec.training_cutoffs]},
        "scores": scores,
        "total_error": {name: s["total_predicted"] / s["total_actual"] - 1 for name, s in scores.items()},
        "wall_seconds": {"flowline": round(flowline_wall, 1), "bgnbd_gamma_gamma": round(baseline_wall, 1)},
        "flowline_model": summary["model"],
    }
    out.write_text(json.dumps(result, indent=1))
    print(f"\n| clv ({len(joined)} customers) | MAE | RMSE | Spearman | normalised Gini | total predicted "
          f"| total actual | wall time |\n|---|---|---|---|---|---|---|---|")
    walls = {"flowline": f"{flowline_wall:.0f} s", "bgnbd_gamma_gamma": f"{baseline_wall:.0f} s", "zero_for_everyone": ""}
    for name, s in scores.items():
        spearman = "n/a" if s["spearman"] is None else f"{s['spearman']:.4f}"
        print(f"| {name} | {s['mae']:.2f} | {s['rmse']:.2f} | {spearman} | {s['gini']:.4f} | "
              f"{s['total_predicted']:,.0f} ({result['total_error'][name]:+.1%}) | {s['total_actual']:,.0f} | "
              f"{walls[name]} |")
    print(f"\n{out}")


if __name__ == "__main__":
    main()
