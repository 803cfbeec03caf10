"""`flowline runs | models | show | open | champion`: what the runs folder holds, read through
flowline/registry.py, and the champion chosen by hand."""

from __future__ import annotations

import argparse
import json
import sys
import webbrowser
from pathlib import Path
from typing import Any

from tabulate import tabulate

from flowline import reports
from flowline.pipelines.cli.common import EXIT_ERROR, add_runs_dir_argument, unrecorded_use_case


def add_parser(commands: argparse._SubParsersAction) -> None:
    runs = commands.add_parser("runs", help="list the local runs: use case, time, outcome, metrics, gates, package")
    runs.add_argument("use_case", nargs="?", metavar="USE_CASE", help="only this use case's runs (default: all)")
    models = commands.add_parser(
        "models", help="list the local packages: version, stage (champion, challenger, rejected, retired), the "
                       "metrics that decided, data sha256")
    models.add_argument("use_case", nargs="?", metavar="USE_CASE", help="only this use case's packages (default: all)")
    show = commands.add_parser("show", help="print a package's model card")
    show.add_argument("version", metavar="VERSION", help="a package version, or a prefix of one that no other shares")
    open_ = commands.add_parser("open", help="print the paths of a package's reports; --browser opens them")
    open_.add_argument("version", metavar="VERSION", help="a package version, or a prefix of one that no other shares")
    open_.add_argument("--browser", action="store_true", help="open each report in the web browser")
    for command, handler in ((runs, _runs), (models, _models), (show, _show), (open_, _open)):
        add_runs_dir_argument(command, "the runs folder whose audit log is read")
        command.add_argument("--json", action="store_true", help="print JSON instead of tables")
        command.set_defaults(handler=handler)
    champion = commands.add_parser(
        "champion", help="make a local package its use case's champion by hand (a rollback to an earlier one), "
                         "recorded in the audit log with the champion it replaces and why")
    champion.add_argument("version", metavar="VERSION", help="a package version, or a prefix of one that no other shares")
    champion.add_argument("--reason", required=True, help="why: kept in the audit log")
    add_runs_dir_argument(champion, "the runs folder whose audit log is read and written")
    champion.set_defaults(handler=_champion)


def _number(value: Any) -> str:
    return f"{value:,.4f}" if isinstance(value, float) else str(value)


ERROR_WIDTH = 80  # of a failed run's error in the runs table; --json has it whole


def _clipped(error: str | None) -> str:
    """A failed run's error on one line of at most ERROR_WIDTH characters."""
    line = " ".join((error or "").split())
    return line if len(line) <= ERROR_WIDTH else line[:ERROR_WIDTH - 3] + "..."


def _metrics_text(metrics: dict[str, float]) -> str:
    return ", ".join(f"{name} {_number(value)}" for name, value in metrics.items())


def _gates_text(gates: dict[str, bool], fairness: dict[str, str]) -> str:
    return ", ".join([f"{name} {'pass' if passed else 'FAIL'}" for name, passed in gates.items()]
                     + [f"{attribute} {gate}" for attribute, gate in fairness.items()])


def _decided(entry) -> dict[str, Any]:
    """The metrics that decided `entry`, or why its package cannot be read: one bad package spoils no listing."""
    from flowline.package.format import PackageError

    if not entry.found:
        return {"metrics": {}, "problem": f"folder gone: {entry.path}"}
    try:
        return {"metrics": entry.decided_by(), "problem": None}
    except PackageError as error:
        said = str(error).removeprefix(f"package {entry.path}: ").replace(entry.path, "its folder")
        return {"metrics": {}, "problem": f"does not verify: {said}"}


def _print(rows: list[dict], table: list[list], headers: list[str], as_json: bool, empty: str) -> None:
    if as_json:
        print(json.dumps(rows, indent=1))
    else:
        print(tabulate(table, headers=headers, disable_numparse=True) if table else empty)


def _runs(args: argparse.Namespace) -> int:
    from flowline.registry import read

    registry = read(args.runs_dir)
    if unrecorded_use_case(args.use_case, set(registry.use_cases()), "runs", args.runs_dir):
        return EXIT_ERROR
    packages = {entry.version: entry for entry in registry.recorded}
    rows = []
    for run in registry.runs:
        if args.use_case and run.use_case != args.use_case:
            continue
        entry = packages.get(run.package_version or "")
        rows.append({**run.as_dict(), **(_decided(entry) if entry else {"metrics": {}, "problem": None}),
                     "gates": entry.gates if entry else {}, "fairness": entry.fairness if entry else {},
                     "decision": entry.decision if entry else None})
    table = [[row["use_case"], row["at"][:19].replace("T", " "), _outcome_text(row),
              _metrics_text(row["metrics"]) or _clipped(row["error"]) or row["problem"] or "",
              _gates_text(row["gates"], row["fairness"]), row["package_version"] or "", row["decision"] or ""]
             for row in rows]
    _print(rows, table, ["use case", "finished (UTC)", "outcome", "metrics", "gates", "package", "decision"],
           args.json, f"no runs recorded under {args.runs_dir}")
    return 0


def _outcome_text(row: dict) -> str:
    """A run's outcome as the table shows it: a run that succeeded but whose package failed a gate (exit 3) says so."""
    failed = [name for name, passed in row["gates"].items() if not passed]
    failed += [attribute for attribute, gate in row["fairness"].items() if gate == "fail"]
    return f"{row['outcome']}, gate failed" if row["outcome"] == "succeeded" and failed else row["outcome"]


def _models(args: argparse.Namespace) -> int:
    from flowline.registry import read

    registry = read(args.runs_dir)
    if unrecorded_use_case(args.use_case, set(registry.use_cases()), "packages", args.runs_dir):
        return EXIT_ERROR
    entries = [entry for entry in registry.recorded if entry.use_case == (args.use_case or entry.use_case)]
    rows = [{**entry.as_dict(), **_decided(entry)} for entry in entries]
    table = [[row["use_case"], row["version"], row["stage"], _metrics_text(row["metrics"]) or row["problem"],
              row["created_at"][:19].replace("T", " "), (row["dataset_sha256"] or "")[:12]] for row in rows]
    _print(rows, table, ["use case", "version", "stage", "decided by (test)", "packaged (UTC)", "data sha256"],
           args.json, f"no packages recorded under {args.runs_dir}")
    return 0


def _champion(args: argparse.Namespace) -> int:
    from flowline.registry import choose_champion

    chosen, before = choose_champion(args.runs_dir, args.version, args.reason)
    replaced = f", in place of {before.version}" if before else ""
    print(f"{chosen.version} is now the champion of use case {chosen.use_case!r}{replaced}; recorded in "
          f"{Path(args.runs_dir) / 'audit.jsonl'}")
    print(f"`flowline run {chosen.use_case}` compares with it; `flowline deploy {chosen.version}` serves it")
    return 0


def _show(args: argparse.Namespace) -> int:
    from flowline.registry import read

    entry = read(args.runs_dir).version(args.version)
    card = entry.model_card()
    print(json.dumps(card, indent=1) if args.json else card_text(card, entry.version, entry.stage))
    return 0


def _open(args: argparse.Namespace) -> int:
    from flowline.registry import read

    paths = read(args.runs_dir).version(args.version).reports()
    print(json.dumps(paths, indent=1) if args.json else tabulate(list(paths.items()), headers=["report", "path"]))
    if args.browser:
        opened = [webbrowser.open(Path(path).resolve().as_uri()) for path in paths.values()]
        if not all(opened):  # a machine without a display or $BROWSER: nothing opened, and nothing said so
            print("flowline: warning: no web browser could be opened (set $BROWSER); open the paths above",
                  file=sys.stderr)
    return 0


def card_text(card: dict, version: str, stage: str) -> str:
    """A model card (model_card.json) as text for a terminal: its facts, metrics, gates and decision as tables."""
    from flowline.card_lines import FAIRNESS_ROWS, code_line, environment_text, quality_rows

    model, data, run = card.get("model", {}), card.get("data", {}), card.get("run", {})
    facts = [["use case", model.get("use_case")], ["version", f"{version} ({stage})"], ["task", model.get("task")],
             ["created", card.get("created_at")],
             ["description", reports.stated(model.get("description"), "description")],
             ["model", reports.members(model.get("members", []))],
             *([["code", code_line(card["code"])]] if card.get("code") else []),
             ["run", " ".join(filter(None, [run.get("name"), run.get("id") and f"(id {run['id']})"])) or "not known"],
             *([["search", card["search"]]] if card.get("search") else []),
             *([["environment", environment_text(card["environment"])]] if card.get("environment") else []),
             *[[f"data {name}", ", ".join(map(str, value)) if isinstance(value, list) else _number(value)]
               for name, value in data.items() if not isinstance(value, dict)],
             *_threshold_rows(card)]
    metrics = [[name, _number(metric["value"]), " to ".join(map(_number, metric.get("ci95") or []))]
               for name, metric in card.get("metrics", {}).items()]
    gates = card.get("gates", {})
    gate_rows = [[name, quality_rows(gate), _number(gate["value"]), _bound(gate), "pass" if gate["passed"] else "FAIL"]
                 for name, gate in gates.get("quality", {}).items()]
    gate_rows += [[f"{attribute}: {name}", FAIRNESS_ROWS, _number(gate["value"]), _bound(gate),
                   "pass" if gate["passed"] else "FAIL"]
                  for attribute, metrics_of in gates.get("fairness", {}).items() for name, gate in metrics_of.items()]
    fairness = [[attribute, *(_number(value) for value in result.values())]
                for attribute, result in card.get("fairness", {}).get("attributes", {}).items()]
    fairness_headers = [f"attribute ({FAIRNESS_ROWS})",
                        *next(iter(card.get("fairness", {}).get("attributes", {}).values()), {})]
    top = card.get("explanation", {}).get("top_columns", {})
    decision = card.get("decision", {})
    parts = [tabulate(facts, tablefmt="plain", disable_numparse=True),
             f"Intended use: {reports.stated(card.get('intended_use'), 'intended_use')}",
             tabulate(metrics, headers=["test metric", "value", "95% interval"], disable_numparse=True),
             *_served_decisions(card),
             tabulate(gate_rows, headers=["gate", "judged on", "value", "bound", "result"], disable_numparse=True)
             if gate_rows else "no gates set",
             *([tabulate(fairness, headers=fairness_headers, disable_numparse=True)] if fairness else []),
             *([tabulate([[name, _number(value)] for name, value in top.items()],
                         headers=["column", f"mean |contribution| ({card['explanation'].get('units', '')})"],
                         disable_numparse=True)] if top else []),
             f"Decision: {decision.get('decision')}: {decision.get('reason')}",
             "Limitations:\n" + "\n".join(f"- {line}" for line in card.get("limitations", []))]
    return "\n\n".join(parts)


def _served_decisions(card: dict) -> list[str]:
    """When per-group thresholds are served, the test metrics above that depend on a threshold are the single
    one's: the decisions served, on the same test rows, beside them."""
    mitigation = card.get("fairness", {}).get("mitigation") or {}
    outcomes = mitigation.get("outcomes", {})
    if not (mitigation.get("applied") and "test" in outcomes.get("mitigated", {})):
        return []
    single, served = outcomes["single_threshold"]["test"], outcomes["mitigated"]["test"]
    rows = [[name, _number(single.get(name)), _number(value)] for name, value in served.items()]
    return ["The metrics above that depend on a threshold are at the single threshold, which is not served; "
            "the served per-group thresholds decide the test rows so:\n"
            + tabulate(rows, headers=["test decisions", "single threshold", "served"], disable_numparse=True)]


def _threshold_rows(card: dict) -> list[list]:
    """The decision threshold as served: per group when a fairness mitigation applies (the single one then
    decides no row), none for a regression."""
    mitigation = card.get("fairness", {}).get("mitigation") or {}
    if mitigation.get("applied") and mitigation.get("thresholds"):
        return [*([f"threshold {'(other groups)' if group == '*' else group}", _number(value)]
                  for group, value in mitigation["thresholds"].items()),
                ["single threshold (not served)", _number(card.get("threshold"))]]
    return [["threshold", _number(card["threshold"])]] if card.get("threshold") is not None else []


def _bound(gate: dict) -> str:
    return " and ".join(([f">= {gate['min']}"] if gate.get("min") is not None else [])
                        + ([f"<= {gate['max']}"] if gate.get("max") is not None else []))
