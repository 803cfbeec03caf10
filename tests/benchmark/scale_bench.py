"""`make bench`: how churn's run time grows with the rows, step by step, at the default budget.

    python tests/benchmark/scale_bench.py --factors 1 10 50 --out build/bench/scale.json

For each factor k, Telco (the churn use case's dataset, from the data home) at k times its
7,043 rows: k = 1 is the file itself; above, batch_bench.py's Telco-shaped rows (drawn with
replacement, seed 0, the numbers moved by small noise, ids made unique; Parquet). The data and
a copy of pipelines/use_cases/churn.yaml that reads it (`data: {path: ...}`) go to the
output's folder, then `flowline run --use-case FILE --no-champion` runs it as a user would.
Each step's wall time (the run summary's `step_seconds`) and the whole run's are written as
JSON and printed as a Markdown table (the .md beside the JSON).

Drawn rows repeat a customer all but exactly, in train and in valid and test alike, so
validation scores keep rising and early stopping stops late: the times are near the caps'
(`tuning.search_rows`, `max_boost_rounds`, `mlp_max_steps`), and the test metrics of k > 1
are not a model's quality, so only the times are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import yaml
from batch_bench import synthesise

from flowline.datasets import dataset_path
from flowline.use_case_loader import USE_CASES_DIR, load_use_case

USE_CASE = USE_CASES_DIR / "churn.yaml"
TELCO_ROWS = 7043


def write_case(factor: int, folder: Path) -> Path:
    """Write Telco x `factor` and a churn use case that reads it; return the use case's path."""
    document = yaml.safe_load(USE_CASE.read_text())
    if factor == 1:
        data = folder / "telco-x1.csv"
        shutil.copyfile(dataset_path(load_use_case(str(USE_CASE)).data.dataset), data)
    else:
        data = folder / f"telco-x{factor}.parquet"
        synthesise(factor * TELCO_ROWS, data)
    document["data"] = {"path": data.name}  # relative to the YAML file's folder
    path = folder / f"churn-x{factor}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def markdown(results: list[dict]) -> str:
    """Steps as rows, factors as columns: seconds."""
    steps = list(dict.fromkeys(step for result in results for step in result["step_seconds"]))
    header = "| step | " + " | ".join(f"x{r['factor']} ({r['rows']:,} rows)" for r in results) + " |"
    lines = [header, "|---|" + "---|" * len(results)]
    for step in steps:
        lines.append(f"| {step} | " + " | ".join(
            f"{r['step_seconds'][step]:.1f}" if step in r["step_seconds"] else "" for r in results) + " |")
    lines.append("| **run (kfp.local included)** | " + " | ".join(f"**{r['wall_seconds']:.1f}**" for r in results)
                 + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--out", required=True, help="the JSON file; the Markdown table goes beside it (.md)")
    args = parser.parse_args()
    if any(factor < 1 for factor in args.factors):
        parser.error(f"--factors: expected whole numbers of at least 1, got {args.factors}")
    out = Path(args.out)
    folder = out.parent / "scale"
    folder.mkdir(parents=True, exist_ok=True)
    results = []
    for factor in args.factors:
        case = write_case(factor, folder)
        summary_path = folder / f"summary-x{factor}.json"
        subprocess.run([sys.executable, "-m", "flowline.pipelines.cli", "run", "--use-case", str(case),
                        "--no-champion", "--runs-dir", str(folder / "runs"), "--summary", str(summary_path)],
                       check=True)
        summary = json.loads(summary_path.read_text())
        results.append({"factor": factor, "rows": summary["rows"]["rows_kept"],
                        "wall_seconds": summary["wall_seconds"], "step_seconds": summary["step_seconds"]})
    table = markdown(results)
    out.write_text(json.dumps({
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "use_case": "churn",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "results": results}, indent=1))
    out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
