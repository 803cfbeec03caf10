"""`make bench-models`: flowline's default search against FLAML and AutoGluon-Tabular, over many datasets and
seeded splits, each given the same wall time.

    python tests/benchmark/models_bench.py --flaml-venv DIR --autogluon-venv DIR --out build/bench/models.json
        [--datasets churn adult ...] [--seeds 0 1 2 3 4]

For every dataset and seed:
1. `flowline run` with the use case's default budget, its split and search seeded with the seed, timed
   end to end (every step, kfp.local included), no champion. The shipped classification use cases run
   as shipped; each public benchmark set runs as a new user would run it, from the YAML `flowline init`
   drafts (bank_marketing without `duration`, which its documentation says leaks the label);
2. that run's own split exported: train + valid (what flowline learned from) and test;
3. FLAML and AutoGluon-Tabular (best_quality; each in its own venv) given flowline's wall time, rounded
   up to a whole second, fitted on train + valid and scored once on test.

The metric is the use case's first gate when it is ROC-AUC or AUPRC (AUPRC for the fraud sets), else
ROC-AUC. Each (dataset, seed) is written to FOLDER/results/ as it finishes and read back on the next
run, so the bench can be stopped and resumed (--fresh measures again; --report-only reports what is
there, measuring nothing). The report: per dataset the mean and standard error over seeds of each system
and of flowline's paired difference to the better of the two others (with its 95 % t interval, and on how
many seeds flowline is level or ahead), the wall times, and the mean rank of each system over every
(dataset, seed); JSON in --out and a Markdown table beside it (.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import yaml
from scipy import stats

from automl_bench import export_split
from flowline.datasets import dataset_path
from flowline.pipelines.cli.common import EXIT_GATE_FAILED
from flowline.use_case_loader import load_use_case

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SEEDS = (0, 1, 2, 3, 4)
SYSTEMS = ("flowline", "flaml", "autogluon")
# dataset -> (shipped use case YAML, or the registered dataset and its label column for `flowline init`)
SHIPPED = {"churn": "churn.yaml", "fraud": "fraud.yaml", "fraud-claims": "fraud-claims.yaml"}
PUBLIC = {"adult": "income", "bank_marketing": "y", "german_credit": "class", "spambase": "spam",
          "online_shoppers": "Revenue", "hr_attrition_ibm": "Attrition"}
LEAKS = {"bank_marketing": ["duration"]}  # known only after the outcome (the dataset's own documentation)
METRIC_NAMES = {"roc_auc": "roc_auc", "auprc": "ap"}  # flowline's name -> the baselines' --metric


def use_case_yaml(dataset: str, folder: Path) -> Path:
    """The YAML flowline runs for `dataset`: the shipped one, or what `flowline init` drafts, as is."""
    if dataset in SHIPPED:
        return ROOT / "pipelines" / "use_cases" / SHIPPED[dataset]
    path = folder / f"{dataset}.yaml"
    if not path.exists():
        subprocess.run([sys.executable, "-m", "flowline.pipelines.cli", "init", str(dataset_path(dataset)), "--label",
                        PUBLIC[dataset], "-o", str(path)], check=True)
        if dataset in LEAKS:
            document = yaml.safe_load(path.read_text())
            for column in LEAKS[dataset]:
                document["columns"].pop(column)
            document["undeclared"] = "ignore"
            path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def seeded(path: Path, seed: int, folder: Path) -> Path:
    """A copy of the use case with its split and its search seeded with `seed`."""
    document = yaml.safe_load(path.read_text())
    document.setdefault("split", {})["seed"] = seed
    document.setdefault("tuning", {})["seed"] = seed
    copy = folder / f"{path.stem}-seed{seed}.yaml"
    copy.write_text(yaml.safe_dump(document, sort_keys=False))
    return copy


def measure(dataset: str, seed: int, args: argparse.Namespace, folder: Path) -> dict:
    """One (dataset, seed): flowline, then FLAML and AutoGluon given flowline's wall time."""
    use_case_path = seeded(use_case_yaml(dataset, folder / "use-cases"), seed, folder / "use-cases")
    use_case = load_use_case(str(use_case_path))
    first_gate = next(iter(use_case.gates), "roc_auc")
    metric = first_gate if first_gate in METRIC_NAMES else "roc_auc"
    work = folder / "work" / f"{dataset}-seed{seed}"
    work.mkdir(parents=True, exist_ok=True)
    summary_path = work / "flowline-summary.json"
    print(f"bench-models: {dataset} seed {seed}: flowline", flush=True)
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "flowline.pipelines.cli", "run", "--use-case", str(use_case_path),
                          "--no-champion", "--runs-dir", str(work / "runs"), "--summary", str(summary_path)])
    if run.returncode not in (0, EXIT_GATE_FAILED):  # a model that fails a gate is still a model to score
        raise subprocess.CalledProcessError(run.returncode, run.args)
    wall = time.monotonic() - started
    summary = json.loads(summary_path.read_text())
    fit_csv, test_csv = export_split(Path(summary["run_dir"]), use_case, work)
    budget = math.ceil(wall)
    result = {"dataset": dataset, "seed": seed, "metric": metric, "budget_seconds": budget,
              "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "flowline": {"roc_auc": summary["metrics"]["roc_auc"], "auprc": summary["metrics"]["auprc"],
                           "wall_seconds": round(wall, 1), "model": summary["model"]}}
    baselines = {
        "flaml": [str(Path(args.flaml_venv) / "bin" / "python"), str(HERE / "flaml_baseline.py"),
                  "--time-budget", str(budget), "--seed", str(seed)],
        "autogluon": [str(Path(args.autogluon_venv) / "bin" / "python"), str(HERE / "autogluon_baseline.py"),
                      "--time-limit", str(budget)],
    }
    for system, command in baselines.items():
        print(f"bench-models: {dataset} seed {seed}: {system}, {budget} s", flush=True)
        out = work / f"{system}.json"
        subprocess.run([*command, str(fit_csv), str(test_csv), "--label", use_case.label.column,
                        "--metric", METRIC_NAMES[metric], "--out", str(out)], check=True)
        result[system] = json.loads(out.read_text())
    return result


def mean_se(values: list[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    se = float(array.std(ddof=1) / math.sqrt(len(array))) if len(array) > 1 else float("nan")
    return float(array.mean()), se


def paired_difference(differences: list[float]) -> dict:
    """flowline minus the better other, per seed: mean, standard error, the 95 % t interval of the mean (n - 1
    degrees of freedom: with 5 seeds, 2.78 standard errors each side) and on how many seeds flowline is level or
    ahead. An interval that holds 0 is a difference these seeds cannot tell from none."""
    mean, se = mean_se(differences)
    half = float(stats.t.ppf(0.975, len(differences) - 1) * se) if len(differences) > 1 else float("nan")
    return {"mean": mean, "se": se, "ci95": [mean - half, mean + half],
            "seeds_level_or_ahead": sum(d >= 0 for d in differences)}


def report(results: list[dict]) -> dict:
    """Per dataset: each system's mean ± standard error over seeds, flowline's paired difference to the better
    of FLAML and AutoGluon (paired_difference), wall times; overall: each system's mean rank over every
    (dataset, seed)."""
    datasets, ranks = {}, {system: [] for system in SYSTEMS}
    for dataset in dict.fromkeys(result["dataset"] for result in results):
        rows = sorted((r for r in results if r["dataset"] == dataset), key=lambda r: r["seed"])
        metric = rows[0]["metric"]
        scores = {system: [row[system][metric] for row in rows] for system in SYSTEMS}
        best_other = [max(row["flaml"][metric], row["autogluon"][metric]) for row in rows]
        datasets[dataset] = {
            "metric": metric, "seeds": [row["seed"] for row in rows],
            **{system: dict(zip(("mean", "se"), mean_se(scores[system]))) for system in SYSTEMS},
            "flowline_minus_best_other": paired_difference(
                [own - other for own, other in zip(scores["flowline"], best_other)]),
            "wall_seconds": {system: round(float(np.mean([row[system]["wall_seconds"] for row in rows])), 1)
                             for system in SYSTEMS},
        }
        for row in rows:  # rank 1 is best; ties share the mean rank
            values = [row[system][metric] for system in SYSTEMS]
            for system, value in zip(SYSTEMS, values):
                ranks[system].append(1 + sum(v > value for v in values) + 0.5 * (sum(v == value for v in values) - 1))
    return {"datasets": datasets, "mean_rank": {system: round(float(np.mean(r)), 3) for system, r in ranks.items()},
            "pairs": len(results)}


def markdown(summary: dict) -> str:
    lines = ["| dataset | metric | seeds | flowline | FLAML | AutoGluon | flowline - better other (95 % interval; "
             "seeds level or ahead) | wall s (flowline / FLAML / AutoGluon) |", "|---|---|---|---|---|---|---|---|"]
    for dataset, row in summary["datasets"].items():
        cells = [f"{row[s]['mean']:.4f} ± {row[s]['se']:.4f}" for s in SYSTEMS]
        paired = row["flowline_minus_best_other"]
        low, high = paired["ci95"]
        cells.append(f"{paired['mean']:+.4f} ± {paired['se']:.4f} ({low:+.4f} to {high:+.4f}; "
                     f"{paired['seeds_level_or_ahead']} of {len(row['seeds'])})")
        walls = " / ".join(f"{row['wall_seconds'][s]:.0f}" for s in SYSTEMS)
        lines.append(f"| {dataset} | {row['metric']} | {len(row['seeds'])} | " + " | ".join(cells) + f" | {walls} |")
    ranks = summary["mean_rank"]
    lines.append(f"\nMean rank over {summary['pairs']} (dataset, seed) pairs (1 is best): "
                 + ", ".join(f"{system} {ranks[system]:.2f}" for system in SYSTEMS))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flaml-venv", required=True)
    parser.add_argument("--autogluon-venv", required=True)
    parser.add_argument("--datasets", nargs="+", default=[*SHIPPED, *PUBLIC], choices=[*SHIPPED, *PUBLIC])
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--fresh", action="store_true", help="measure again what earlier runs measured")
    parser.add_argument("--report-only", action="store_true",
                        help="measure nothing: report the (dataset, seed) pairs earlier runs measured")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    if 42 in args.seeds:
        parser.error("seed 42 is the reporting split: benchmark defaults on other seeds")
    if args.fresh and args.report_only:
        parser.error("--fresh measures again and --report-only measures nothing: give one")
    folder = args.out.with_suffix("")
    (folder / "results").mkdir(parents=True, exist_ok=True)
    (folder / "use-cases").mkdir(parents=True, exist_ok=True)
    results = []
    for dataset in args.datasets:
        for seed in args.seeds:
            path = folder / "results" / f"{dataset}-seed{seed}.json"
            if not args.report_only and (args.fresh or not path.exists()):
                path.write_text(json.dumps(measure(dataset, seed, args, folder), indent=1))
            if path.exists():
                results.append(json.loads(path.read_text()))
    if not results:
        sys.exit(f"bench-models: nothing measured yet in {folder / 'results'}")
    summary = {"benchmark": "flowline's default search against FLAML and AutoGluon at equal wall time",
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
               **report(results), "results": results}
    args.out.write_text(json.dumps(summary, indent=1))
    table = markdown(summary)
    args.out.with_suffix(".md").write_text(table + "\n")
    print("\n" + table + f"\n\n{args.out}")


if __name__ == "__main__":
    main()
