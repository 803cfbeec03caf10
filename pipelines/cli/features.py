"""`flowline features [list] | features diff`: the feature registry, read through flowline/feature_registry.py."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tabulate import tabulate

from flowline.pipelines.cli.common import (EXIT_ERROR, EXIT_FEATURES_DIFFER, add_runs_dir_argument,
                                          unrecorded_use_case)

TARGET_HELP = ("a feature-set version, a package version (or a unique prefix of either), a use case (its newest "
               "package), a package folder or s3:// prefix, or a FeatureSet JSON file")


def add_parser(commands: argparse._SubParsersAction) -> None:
    features = commands.add_parser(
        "features", help="list the feature sets the local packages use, or compare two",
        description="Without an action, list the feature sets (as `flowline features list`).")
    actions = features.add_subparsers(dest="features_action", metavar="ACTION")
    listing = actions.add_parser(
        "list", help="list the feature sets: use case, version, inputs, encodings, generated features with their "
                     "definitions, the data sha256 they were fitted on, and the packages that use them")
    listing.add_argument("use_case", nargs="?", metavar="USE_CASE",
                         help="only the feature sets of this use case's packages (default: all)")
    compare = actions.add_parser(
        "diff", help=f"show what changed from feature set A to B; exit 0 when they are the same, "
                     f"{EXIT_FEATURES_DIFFER} when they differ")
    compare.add_argument("before", metavar="A", help=TARGET_HELP)
    compare.add_argument("after", metavar="B", help=TARGET_HELP)
    for command, handler in ((features, _list), (listing, _list), (compare, _diff)):
        add_runs_dir_argument(command, "the runs folder whose packages are read")
        command.add_argument("--json", action="store_true", help="print JSON instead of tables")
        command.set_defaults(handler=handler, use_case=None)


def _list(args: argparse.Namespace) -> int:
    from flowline.feature_registry import feature_sets

    found, problems = feature_sets(args.runs_dir)
    if unrecorded_use_case(args.use_case, {name for entry in found for name in entry.use_cases}, "feature sets",
                           args.runs_dir):
        return EXIT_ERROR
    chosen = [entry for entry in found if args.use_case is None or args.use_case in entry.use_cases]
    for problem in problems:
        print(f"flowline: warning: {problem}", file=sys.stderr)
    if args.json:
        print(json.dumps([entry.as_dict() for entry in chosen], indent=1))
    elif not chosen:
        print(f"no feature sets recorded under {args.runs_dir}" + (f" for {args.use_case}" if args.use_case else ""))
    else:
        print("\n\n".join(_entry_text(entry) for entry in chosen))
    return 0


def _entry_text(entry) -> str:
    """One feature set as a person reads it: its facts, then its generated features with their definitions."""
    definition = entry.definition
    by_encoding: dict[str, list[str]] = {}
    for column, encoded in definition["encodings"].items():
        by_encoding.setdefault(encoded["encoding"], []).append(f"{column} ({encoded['categories']} values)")
    transforms = [f"{transform}({column})" for column, transform in definition["transforms"].items()
                  if transform != "identity"]
    entity = definition["entity"]
    facts = [["feature set", entry.version], ["use case", ", ".join(entry.use_cases)],
             ["inputs", f"{len(definition['inputs'])}: {', '.join(definition['inputs'])}"],
             ["encodings", "; ".join(f"{encoding}: {', '.join(columns)}" for encoding, columns in by_encoding.items())
              or "none"],
             ["transforms", ", ".join(transforms) or "none"],
             *([["entity windows", f"by {entity['column']} over {entity['time_column']}, definition "
                                   f"{', '.join(entry.entity_definitions)}, {entity['entities']} entities known"]]
               if entity else []),
             ["label", _label_text(definition["label"])],
             ["features", str(definition["width"])],
             ["data sha256", ", ".join(entry.dataset_sha256)],
             ["packages", ", ".join(f"{p['version']} ({p['use_case']}, {p['stage']})" for p in entry.packages)]]
    generated = [[g["name"], g["kind"], g["definition"]] for g in definition["generated"]]
    return "\n\n".join([tabulate(facts, tablefmt="plain", disable_numparse=True),
                        tabulate(generated, headers=["generated feature", "kind", "definition"], disable_numparse=True)
                        if generated else "no generated features"])


def _label_text(label: dict[str, Any]) -> str:
    return label["column"] + (f" (positive: {label['positive']})" if label.get("positive") is not None else "")


def _diff(args: argparse.Namespace) -> int:
    from flowline.feature_registry import diff, resolve_feature_set

    before_label, before = resolve_feature_set(args.before, args.runs_dir)
    after_label, after = resolve_feature_set(args.after, args.runs_dir)
    changes = diff(before, after)
    if args.json:
        print(json.dumps({"a": before_label, "b": after_label, **changes}, indent=1))
    else:
        print(f"A: feature set {changes['before']}, from {before_label}\n"
              f"B: feature set {changes['after']}, from {after_label}")
        print("\n".join(_diff_lines(changes)))
    return 0 if changes["same"] else EXIT_FEATURES_DIFFER


def _diff_lines(changes: dict[str, Any]) -> list[str]:
    """The changes as lines; one line saying so when there are none, or when only fitted values moved."""
    if changes["same"]:
        return ["the same feature set: nothing changed"]
    lines = [f"{what}: {', '.join(changes[key])}" for key, what in (
        ("inputs_added", "inputs added"), ("inputs_removed", "inputs removed"),
        ("generated_added", "generated features added"), ("generated_removed", "generated features removed"))
        if changes[key]]
    lines += [f"encoding of {column}: {old} -> {new}" for column, (old, new) in changes["encodings_changed"].items()]
    lines += [f"transform of {column}: {old} -> {new}" for column, (old, new) in changes["transforms_changed"].items()]
    lines += [f"vocabulary of {column}: {v['before']} -> {v['after']} values ({v['added']} new, {v['removed']} gone)"
              for column, v in changes["vocabularies"].items()]
    if changes["label"]:
        lines.append(f"label: {_label_text(changes['label'][0])} -> {_label_text(changes['label'][1])}")
    if changes["refitted"]:
        lines.append(f"refitted (same definition, other learned values): {', '.join(changes['refitted'])}")
    return lines or ["the same definitions; only the fitted state differs"]
