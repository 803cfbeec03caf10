"""Running a use case's pipeline on this machine through kfp.local, and summarising the run."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path

from tabulate import tabulate

from flowline import audit, reports
from flowline.fairness_summary import (GATE_HEADERS, OUTCOME_HEADERS, fairness_summary, gate_rows,
                                       outcome_rows, threshold_rows)
from flowline.package.format import (CARD_HTML, LINEAGE_FILE, MODEL_DIR, REPORT_FILES, REPORTS_DIR, TRAINING_FILE,
                                     Package)
from flowline.pipelines.progress import ANSI, ProgressStream
from flowline.registry import newest_package
from flowline.use_case import FAIRNESS_METRICS, UseCase
from flowline.use_case_loader import load_use_case, use_case_file

class RunInterrupted(KeyboardInterrupt):
    """A Ctrl-C stopped the run; the message names the step and the incomplete run folder."""


def pipeline_steps(pipeline) -> tuple[tuple[str, ...], str, dict[str, str]]:
    """The pipeline's tasks as its compiled spec names them (kfp.local's log lines use these names), in
    an order they can run in; a line that shows them by display name, joining with + the steps that
    can run side by side; and each one's display name (tune-2 is tune-linear)."""
    tasks = pipeline.pipeline_spec.root.dag.tasks
    depth: dict[str, int] = {}

    def depth_of(name: str) -> int:
        if name not in depth:
            depth[name] = 1 + max((depth_of(upstream) for upstream in tasks[name].dependent_tasks), default=-1)
        return depth[name]

    names = tuple(sorted(tasks, key=lambda name: (depth_of(name), name)))
    levels = [[tasks[name].task_info.name for name in names if depth[name] == level]
              for level in range(max(depth.values()) + 1)]
    return names, " -> ".join(" + ".join(level) for level in levels), {name: tasks[name].task_info.name for name in names}


def run_local(
    use_case: UseCase | str | Path,
    runs_dir: str | Path = "runs",
    trials: int = 0,
    source: str | Path = "",
    summary_path: str | Path | None = None,
    verbose: bool = False,
    champion: str | Path | None = None,
    tuning_backend: str = "",
    runner: object | None = None,
    quiet: bool = False,
    written_in: str | Path | None = None,
) -> dict:
    """Run the pipeline through kfp.local in a new run folder; return the summary. `use_case`: one loaded, or
    a built-in use case's name or a use-case YAML's path (as `flowline run` takes them); `written_in`, for one
    loaded, the YAML file it was loaded from, which the run's record names.

    Each step runs in this Python environment (kfp.local's SubprocessRunner), or with `runner`,
    for example kfp.local's DockerRunner, in the flowline image.

    `champion` is the package the new model must beat: by default the newest package of
    the same use case under `runs_dir` that was promoted (if any); "" compares with none.
    The summary is written as JSON to `summary_path`, or to summary.json in the run folder.
    The task logs go to run.log in the run folder (without kfp.local's input JSON and colour codes);
    the terminal shows progress bars, or plain progress lines when it is not a terminal (everything
    with `verbose`, nothing with `quiet`: a notebook's loop over seeds or datasets). The run, its package and
    its gate decision are recorded
    in the audit log, `runs_dir`/audit.jsonl; a failed run's record holds its root cause in one
    line ("step 'ingest': ContractError: ..."). Raises RuntimeError naming the failed step, the cause and
    the path of run.log; RunInterrupted (a KeyboardInterrupt) naming the step a Ctrl-C stopped, recorded as
    an interrupted run.
    """
    from kfp import local

    from flowline.pipelines.template import build_pipeline

    started = time.monotonic()
    if not isinstance(use_case, UseCase):
        written_in = use_case_file(use_case)
        use_case = load_use_case(use_case)
    if trials < 0:
        raise ValueError(f"trials {trials}: give a number of trials per family, or 0 for the use case's budget")
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source: a path, http(s) URL or s3:// URI of the data, got {type(source).__name__}")
    source = os.fspath(source)  # a pipeline argument is text
    if champion is None:
        champion = newest_package(runs_dir, use_case.name, promoted_only=True) or ""
    run_dir = Path(runs_dir).resolve() / f"{use_case.name}-{datetime.now():%Y%m%d-%H%M%S-%f}"
    run_dir.mkdir(parents=True)
    pipeline = build_pipeline(use_case)
    steps, shown, display = pipeline_steps(pipeline)
    terminal = io.StringIO() if quiet else sys.stdout  # quiet: the progress kept in memory, a few kB, then dropped
    for line in (f"running use case {use_case.name!r} locally, {len(steps)} steps ({shown})", f"run folder {run_dir}",
                 f"champion {champion or 'none'}", f"full log {run_dir / 'run.log'}"):
        print(f"flowline: {line}", file=terminal)
    local.init(runner=runner or local.SubprocessRunner(use_venv=False), pipeline_root=str(run_dir),
               raise_on_error=True)
    audit_log = Path(runs_dir).resolve() / audit.AUDIT_FILE
    run = {"use_case": use_case.name, "run_dir": str(run_dir), "source": source or "(the use case's)",
           "trials": trials or "(the use case's)", "champion": str(champion) or None,
           # which YAML it was, and what it said: a custom `churn` is listed as the built-in one is
           "use_case_file": written_in and str(Path(written_in).resolve()),
           "use_case_sha256": hashlib.sha256(use_case.model_dump_json().encode()).hexdigest()}
    with open(run_dir / "run.log", "w") as log, warnings.catch_warnings():
        # kfp.local warns about any image without "python" in its name; the flowline image has Python.
        warnings.filterwarnings("ignore", message="You may be attemping", category=RuntimeWarning)
        progress = ProgressStream(log, terminal, steps, verbose, display)
        try:
            with contextlib.redirect_stdout(progress):
                outcome = pipeline(source=source, trials=trials, tuning_backend=tuning_backend, champion=str(champion))
        except RuntimeError as error:
            cause = progress.failure or " ".join(ANSI.sub("", str(error)).split())
            audit.append(audit_log, "pipeline_run", {**run, "outcome": "failed", "error": cause})
            raise RuntimeError(f"{cause} (the full log: {run_dir / 'run.log'})") from None
        except KeyboardInterrupt:  # Ctrl-C: kfp.local's traceback says nothing of the run
            where = f"during step {progress.step!r}" if progress.step else "before its first step"
            audit.append(audit_log, "pipeline_run", {**run, "outcome": "interrupted", "error": f"interrupted {where}"})
            raise RunInterrupted(f"interrupted {where}: the run folder {run_dir} is incomplete and holds no "
                                 f"package (the log so far: {run_dir / 'run.log'})") from None
        finally:
            progress.finish()
    package_dir, quarantine = Path(outcome.outputs["package"].path), Path(outcome.outputs["quarantine"].path)
    summary = summarize(use_case, package_dir, quarantine, run_dir, wall_seconds=time.monotonic() - started)
    summary["reports"].update(run_reports(package_dir, run_dir))
    if use_case.tuning.time_budget is not None:  # the search step's record of how it spent the budget
        summary["search_budget"] = json.loads((package_dir.parent.parent / "search" / "budget").read_text())
    summary["step_seconds"] = progress.step_seconds
    record_run(audit_log, run, summary)
    summary["audit_log"] = str(audit_log)
    # The run folder always holds its summary (`flowline open` lists the reports from it); --summary, a copy.
    targets = [run_dir / "summary.json", *([Path(summary_path)] if summary_path else [])]
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(summary, indent=1))
    summary["summary_path"] = str(targets[-1])
    return summary


def record_run(audit_log: Path, run: dict, summary: dict) -> None:
    """The audit records of a finished run: the run, the package it produced (with the code that built it, which
    stays on record when the package is gone), and its gate decision, with each gate's value and bounds and the
    champion it was compared with."""
    version = {"use_case": summary["use_case"], "package_version": summary["package_version"]}
    decision = summary["champion_challenger"]
    audit.append(audit_log, "pipeline_run", {**run, "outcome": "succeeded", "wall_seconds": summary["wall_seconds"]})
    audit.append(audit_log, "package", {**version, "package": summary["package"],
                                        "dataset_sha256": summary["dataset_sha256"], "code": summary["code"]})
    audit.append(audit_log, "gate_decision", {
        **version, "gates_passed": summary["gates_passed"],
        "gates": {name: gate["passed"] for name, gate in summary["gates"].items()},
        "gate_values": {name: {key: gate[key] for key in ("value", "min", "max")} for name, gate in
                        summary["gates"].items()},
        "fairness": {attribute: result["gate"] for attribute, result in summary["fairness"].items()},
        "fairness_mitigation": bool(summary["fairness_mitigation"] and summary["fairness_mitigation"]["applied"]),
        "decision": decision["decision"], "reason": decision["reason"],
        "champion_version": (decision.get("champion") or {}).get("version")})


def summarize(use_case: UseCase, package_dir: Path, quarantine: Path, run_dir: Path, wall_seconds: float) -> dict:
    """What a run produced, read back from its verified package."""
    package = Package.open(package_dir)
    evaluation = package.evaluation
    lineage = json.loads((package_dir / LINEAGE_FILE).read_text())
    training = json.loads((package_dir / MODEL_DIR / TRAINING_FILE).read_text())
    decision = evaluation["champion_challenger"]
    return {
        "use_case": use_case.name,
        "task": use_case.task,
        "metrics": evaluation["metrics"],
        "threshold": evaluation.get("threshold"),
        "gates": evaluation["gates"],
        "gates_passed": evaluation["gates_passed"],
        "model": {**training["selection"]["model"], "selected": training["selection"]["selected"],
                  "candidates": {c["family"]: c["held_out_score"] for c in training["candidates"]}},
        "champion_challenger": {key: decision.get(key) for key in
                                ("decision", "reason", "test", "p_value", "difference", "ci95", "champion")},
        "fairness": {attribute: {**{name: result[name] for name in FAIRNESS_METRICS}, "gate": result["gate"]}
                     for attribute, result in evaluation["fairness"]["attributes"].items()},
        "fairness_mitigation": fairness_summary(evaluation["fairness"]),
        "package": str(package_dir),
        "package_version": package.version,
        "model_card": str(package_dir / CARD_HTML),
        "reports": package_reports(package_dir),
        "rows": {k: lineage["dataset"][k] for k in ("rows_in", "rows_kept", "rows_quarantined")},
        "undeclared_columns": lineage["dataset"].get("undeclared_columns", []),
        "dataset_sha256": lineage["dataset"]["source_sha256"],
        "code": lineage["code"],
        "quarantine": str(quarantine),
        "run_dir": str(run_dir),
        "wall_seconds": round(wall_seconds, 2),
    }


def package_reports(package_dir: Path) -> dict[str, str]:
    """The reports the package holds, by name: the model card, then the steps' reports in reports/."""
    found = {"model_card": package_dir / CARD_HTML,
             **{name: package_dir / REPORTS_DIR / file for name, file in REPORT_FILES.items()}}
    return {name: str(path) for name, path in found.items() if path.is_file()}


# Reports kept in the run folder, not the package (their plots show sample rows' raw values): name -> the task
# and output that wrote it in kfp.local's run folder, and its file in the run folder's reports/.
RUN_REPORTS = {"explanation": ("explain", "report", "explanation.html")}


def run_reports(package_dir: Path, run_dir: Path) -> dict[str, str]:
    """Copy RUN_REPORTS from the steps' artifacts (kfp.local keeps each as pipeline run/task/output, beside the
    package's task) to `run_dir`/reports, under names that open by their extension; return their paths."""
    tasks = package_dir.parent.parent
    (run_dir / REPORTS_DIR).mkdir(exist_ok=True)
    found = {}
    for name, (task, output, file) in RUN_REPORTS.items():
        found[name] = str(shutil.copyfile(tasks / task / output, run_dir / REPORTS_DIR / file))
    return found


def format_summary(summary: dict) -> str:
    """The end-of-run table: metrics, gate decisions, artifact paths."""
    metrics = [[name, f"{value:.4f}"] for name, value in summary["metrics"].items()]
    if summary["threshold"] is not None:
        metrics.append(["threshold (cost-optimal, out of fold)", f"{summary['threshold']:.4f}"])
    gates = [
        [name, f"{g['value']:.4f}", "" if g["min"] is None else f">= {g['min']}",
         "" if g["max"] is None else f"<= {g['max']}", "pass" if g["passed"] else "FAIL"]
        for name, g in summary["gates"].items()
    ]
    rows = summary["rows"]
    model = summary["model"]
    choice = [["model", ("ensemble: " if model["selected"] == "ensemble" else "") + reports.members(model["members"])],
              ["champion/challenger", f"{summary['champion_challenger']['decision']}: "
                                      f"{summary['champion_challenger']['reason']}"]]
    spent = summary.get("search_budget", {})
    if "families" in spent:
        choice.append(["search budget", f"{spent['seconds']:.0f} of {spent['time_budget']:g} s: " + "; ".join(
            f"{family} {f['trials']} trials in {f['seconds']:.0f} s ({f['stopped']})"
            for family, f in spent["families"].items())])
    paths = [
        ["package", f"{summary['package']} (version {summary['package_version']}, verified)"],
        *([f"report: {name.replace('_', ' ')}", path] for name, path in summary["reports"].items()),
        ["quarantine", f"{summary['quarantine']} ({rows['rows_quarantined']} of {rows['rows_in']} rows)"],
        *([["columns not declared", f"{', '.join(summary['undeclared_columns'])} (not used)"]]
          if summary["undeclared_columns"] else []),
        ["run folder", summary["run_dir"]],
    ]
    verdict = "all gates passed" if summary["gates_passed"] else gate_verdict(summary)
    return "\n\n".join([
        f"Use case {summary['use_case']}: {verdict}, {summary['wall_seconds']:.1f} s",
        tabulate(metrics, headers=["test metric", "value"], disable_numparse=True),
        tabulate(gates, headers=["gate", "value", "min", "max", "decision"], disable_numparse=True) if gates else "no gates set",
        *fairness_tables(summary["fairness_mitigation"]),
        tabulate(choice, headers=["decision", "outcome"], disable_numparse=True),
        tabulate(paths, headers=["artifact", "path"]),
    ])


def gate_verdict(summary: dict) -> str:
    """Which kind of gate failed, and which ones: the quality gates (evaluate) or the fairness gates (bias)."""
    quality = [name for name, gate in summary["gates"].items() if not gate["passed"]]
    fairness = [attribute for attribute, result in summary["fairness"].items() if result["gate"] != "pass"]
    failed = ([f"QUALITY GATE FAILED: {', '.join(quality)}"] if quality else []) + \
        ([f"FAIRNESS GATE FAILED: {', '.join(fairness)}"] if fairness else [])
    return "; ".join(failed) or "GATE FAILED"


def fairness_tables(mitigation: dict | None) -> list[str]:
    """The fairness gates under one threshold and under per-group thresholds (out of fold, where they were
    decided, and on test), their cost and balanced accuracy, the served thresholds, and why."""
    if mitigation is None:
        return []
    shown = (lambda row: [f"{v:,.4f}" if isinstance(v, float) else v for v in row])
    return [tabulate([shown(row) for row in gate_rows(mitigation)], headers=GATE_HEADERS, disable_numparse=True),
            tabulate([shown(row) for row in outcome_rows(mitigation)], headers=OUTCOME_HEADERS, disable_numparse=True)
            + "\nserved thresholds: " + ", ".join(f"{group} {value:.4f}" for group, value in threshold_rows(mitigation))
            + f"\nfairness mitigation {mitigation['reason']}"]
