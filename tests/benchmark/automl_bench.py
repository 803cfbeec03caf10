"""`make bench`: flowline's default AutoML budget against FLAML on the same fixed split, in the same run.

    python tests/benchmark/automl_bench.py USE_CASE --flaml-venv DIR --out FILE [--time-budget 300]

1. `flowline run USE_CASE` with the use case's default budget, timed end to end (every
   step, kfp.local included), with no champion;
2. the run's own split: train + valid (what flowline learned from) and test, written as
   CSV with the contract's columns and the label as 0/1;
3. FLAML (`flaml[automl]`, its own venv) with `time_budget` seconds, searching for the
   use case's first gate metric (ROC-AUC for churn, AUPRC for fraud), fitted on
   train + valid and scored once on test.

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
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from flowline.use_case_loader import load_use_case

HERE = Path(__file__).resolve().parent
FLAML_METRIC = {"roc_auc": "roc_auc", "auprc": "ap"}  # flowline's name -> FLAML's
COMPARED = ("roc_auc", "auprc", "recall_at_p90", "precision_at_r90")


def export_split(run_dir: Path, use_case, folder: Path) -> tuple[Path, Path]:
    """The run's split as CSV for FLAML: contract feature columns and the label as 0/1."""
    parts = {name: pd.read_parquet(next(run_dir.glob(f"*/split/{name}"))) for name in ("train", "valid", "test")}
    label = use_case.label.column
    paths = []
    for name, frame in (("fit", pd.concat([parts["train"], parts["valid"]])), ("test", parts["test"])):
        table = frame[use_case.feature_columns].copy()
        table[label] = (frame[label].astype(str) == use_case.label.positive).astype(int)
        path = folder / f"{use_case.name}-{name}.csv"
        table.to_csv(path, index=False)
        paths.append(path)
    return paths[0], paths[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("use_case")
    parser.add_argument("--flaml-venv", required=True)
    parser.add_argument("--time-budget", type=int, default=300)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    use_case = load_use_case(args.use_case)
    first_gate = next(iter(use_case.gates), None)
    if use_case.task != "binary" or first_gate not in FLAML_METRIC:
        parser.error(f"{use_case.name}: this bench compares binary use cases whose first gate is roc_auc or auprc")
    metric = FLAML_METRIC[first_gate]
    out = Path(args.out)
    folder = out.parent / f"automl-{use_case.name}"
    folder.mkdir(parents=True, exist_ok=True)

    summary_path = folder / "flowline-summary.json"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "flowline.pipelines.cli", "run", args.use_case, "--no-champion",
                    "--runs-dir", str(folder / "runs"), "--summary", str(summary_path)], check=True)
    flowline_wall = time.monotonic() - started
    summary = json.loads(summary_path.read_text())

    fit_csv, test_csv = export_split(Path(summary["run_dir"]), use_case, folder)
    flaml_out = folder / "flaml.json"
    subprocess.run([str(Path(args.flaml_venv) / "bin" / "python"), str(HERE / "flaml_baseline.py"), str(fit_csv),
                    str(test_csv), "--label", use_case.label.column, "--time-budget", str(args.time_budget),
                    "--metric", metric, "--out", str(flaml_out)], check=True)
    flaml = json.loads(flaml_out.read_text())

    result = {
        "use_case": use_case.name,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "split": {"fit_rows": flaml["fit_rows"], "test_rows": flaml["test_rows"], "seed": use_case.split.seed},
        "flowline": {**{k: summary["metrics"][k] for k in COMPARED},
                     "wall_seconds": round(flowline_wall, 1), "model": summary["model"]},
        "flaml": {**flaml, "metric": metric},
    }
    result["flowline_minus_flaml"] = {k: result["flowline"][k] - flaml[k] for k in COMPARED}
    out.write_text(json.dumps(result, indent=1))
    print(f"\n| {use_case.name} | test ROC-AUC | test AUPRC | recall at precision >= 0.90 | "
          f"precision at recall >= 0.90 | wall time |\n|---|---|---|---|---|---|")
    for name, scores, wall in (("flowline (default budget)", result["flowline"], flowline_wall),
                               (f"FLAML {args.time_budget} s ({flaml['best_estimator']}, {metric})", flaml,
                                flaml["wall_seconds"])):
        print(f"| {name} | " + " | ".join(f"{scores[k]:.4f}" for k in COMPARED) + f" | {wall:.0f} s |")
    print(f"\n{out}")


if __name__ == "__main__":
    main()
