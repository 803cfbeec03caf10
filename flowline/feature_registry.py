"""The feature registry: the FeatureSets a runs folder's packages use, described, compared and shared.

Not a second store: every fact comes from the packages the local registry (registry.py) lists,
each opened through `Package.open` (so verified): its FeatureSet (feature_set.json, versioned by
the hash of its fitted state), its lineage (lineage.json: the sha256 of the data it was fitted on)
and its use case. Packages whose FeatureSets have one version share one entry.

A use case that reuses another's entity-feature definition (`features.entity_features_from`)
gets the owner's window outputs from the owner's champion package here (`with_owner_outputs`),
so that both compute the same entity features from the same online state.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from flowline.features.feature_set import FeatureSet
from flowline.features.kinds import (Calendar, CategoryCode, EntityFeatures, Feature, FeatureError, Frequency, Numeric,
                                     OneHot, Product, Ratio, TargetEncoding)
from flowline.package.format import LINEAGE_FILE, Package, PackageError
from flowline.registry import RegistryError, newest_package, read, resolve_package
from flowline.use_case import UseCase, UseCaseError

ENCODED = (OneHot, TargetEncoding, Frequency)


@dataclass
class FeatureSetEntry:
    """One FeatureSet version: its definition, the data it was fitted on and the packages that use it."""

    version: str
    use_cases: list[str]
    definition: dict[str, Any]
    dataset_sha256: list[str] = field(default_factory=list)
    entity_definitions: list[str] = field(default_factory=list)  # its entity features' definition names
    packages: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe(feature_set: FeatureSet) -> dict[str, Any]:
    """What a FeatureSet computes, from its fitted state: inputs, encodings with their vocabulary sizes,
    numeric transforms, generated features with their definitions, the entity windows and the label.
    Entity values (card or customer ids) are counted, never listed."""
    encodings = {f.column: {"encoding": f.kind, "categories": _vocabulary_size(feature_set, f.column)}
                 for f in feature_set.features if isinstance(f, ENCODED)}
    entity = next((f for f in feature_set.features if isinstance(f, EntityFeatures)), None)
    return {
        "inputs": list(feature_set.input_columns),
        "encodings": encodings,
        "transforms": {f.column: f.transform for f in feature_set.features if isinstance(f, Numeric)},
        "generated": [item for f in feature_set.features[len(feature_set.numeric) + len(feature_set.categorical):]
                      for item in _generated(f)],
        "entity": None if entity is None else {
            "column": entity.history.entity, "time_column": entity.history.time,
            "amount_columns": list(entity.history.amounts), "outputs": [list(o) for o in entity.outputs],
            "entities": len(entity.history.events)},
        "label": dict(feature_set.label),
        "width": feature_set.width,
    }


def _vocabulary_size(feature_set: FeatureSet, column: str) -> int:
    return next(len(i.categories) for i in feature_set.categorical if i.column == column)


def _generated(feature: Feature) -> list[dict[str, Any]]:
    """Each output of a generated feature (product, ratio, calendar, entity window, category code)
    with its definition in words."""
    if isinstance(feature, Product):
        text = f"{feature.left} squared" if feature.left == feature.right else f"{feature.left} * {feature.right}"
    elif isinstance(feature, Ratio):
        text = f"{feature.numerator} / {feature.denominator} (0 where {feature.denominator} is 0)"
    elif isinstance(feature, Calendar):
        return [{"name": name, "kind": "calendar", "definition": f"the {part.replace('_', ' ')} of {feature.column} "
                                                                  f"(UTC; -1 when missing)"}
                for name, part in zip(feature.names, feature.parts)]
    elif isinstance(feature, EntityFeatures):
        return [{"name": name, "kind": "entity", "output": list(output), "definition": _window_text(feature, output)}
                for name, output in zip(feature.names, feature.outputs)]
    elif isinstance(feature, CategoryCode):
        text = f"the index of {feature.column} in its vocabulary, for the trees' native categorical splits"
    else:
        raise FeatureError(f"no description of a {type(feature).__name__} feature")
    return [{"name": feature.names[0], "kind": feature.kind, "definition": text}]


def _window_text(feature: EntityFeatures, output: tuple) -> str:
    entity, time = feature.history.entity, feature.history.time
    if output[0] == "recency":
        return f"seconds since the previous event of the same {entity} (by {time}; -1 when none)"
    events = f"events of the same {entity} in the {output[1]:g} s before the row (by {time})"
    return f"the number of {events}" if output[0] == "count" else f"the sum of {output[2]} over the {events}"


def feature_sets(runs_dir: str | Path) -> tuple[list[FeatureSetEntry], list[str]]:
    """The FeatureSets of `runs_dir`'s packages, in the order their first package was made, and a line for
    each package that does not verify (left out: one bad package spoils no listing)."""
    found: dict[str, FeatureSetEntry] = {}
    problems = []
    for entry in read(runs_dir).packages:
        try:
            package = entry.package()
            feature_set = package.feature_set
            lineage = json.loads((package.path / LINEAGE_FILE).read_text())
        except (PackageError, FeatureError) as error:  # does not verify, or a FeatureSet format it cannot read
            problems.append(f"package {entry.version} ({entry.use_case}) left out: {error}")
            continue
        if feature_set.version not in found:
            found[feature_set.version] = FeatureSetEntry(feature_set.version, [], describe(feature_set))
        listed = found[feature_set.version]
        for values, value in ((listed.use_cases, entry.use_case),
                              (listed.dataset_sha256, lineage["dataset"]["source_sha256"])):
            if value not in values:
                values.append(value)
        if listed.definition["entity"] and package.use_case.entity_definition not in listed.entity_definitions:
            listed.entity_definitions.append(package.use_case.entity_definition)
        listed.packages.append({"version": entry.version, "use_case": entry.use_case, "stage": entry.stage,
                                "path": entry.path})
    return list(found.values()), problems


def resolve_feature_set(target: str, runs_dir: str | Path) -> tuple[str, FeatureSet]:
    """The FeatureSet `target` names, and where it was read (a file, or a package and its use case): a
    FeatureSet JSON file; a feature-set version (or a unique prefix of one) used by a package in
    `runs_dir`; else whatever `resolve_package` takes (a package folder or s3:// prefix, a use case's
    newest package, a package version or its prefix), that package's FeatureSet."""
    path = Path(target)
    if path.suffix == ".json" and path.is_file():
        try:
            return str(path), FeatureSet.load(path)
        except (ValueError, KeyError, TypeError) as error:
            raise RegistryError(f"{target} is not a FeatureSet file: {error}") from None
    sets, _ = feature_sets(runs_dir)
    exact = [s for s in sets if s.version == target]
    matches = exact or [s for s in sets if s.version.startswith(target)]
    packages = [e.version for e in read(runs_dir).packages if e.version.startswith(target)] if not exact else []
    if len(matches) + len(packages) > 1:
        both = [f"feature set {s.version}" for s in matches] + [f"package {v}" for v in packages]
        raise RegistryError(f"{target!r} is ambiguous: it starts {', '.join(both)}; give more of it")
    if matches:
        first = matches[0].packages[0]
        return f"package {first['version']} of {first['use_case']}", Package.open(first["path"]).feature_set
    try:
        package = Package.open(resolve_package(target, runs_dir))
    except UseCaseError as error:
        raise UseCaseError(f"{error}; `flowline features` lists the feature-set versions") from None
    return f"package {package.version} of {package.use_case.name}", package.feature_set


def diff(before: FeatureSet, after: FeatureSet) -> dict[str, Any]:
    """What changed from `before` to `after`: inputs, encodings, numeric transforms, generated features,
    vocabularies (sizes and how many categories came and went, never which), the label, and the fitted
    values that changed under an unchanged definition (fills, target and frequency encodings, the entity
    history). `same` is true when both are one FeatureSet version."""
    a, b = describe(before), describe(after)
    names_a, names_b = [g["name"] for g in a["generated"]], [g["name"] for g in b["generated"]]
    vocabularies = {}
    old_vocabularies, new_vocabularies = _vocabularies(before), _vocabularies(after)
    for column in sorted(old_vocabularies.keys() & new_vocabularies.keys()):
        old, new = old_vocabularies[column], new_vocabularies[column]
        if old != new:
            vocabularies[column] = {"before": len(old), "after": len(new), "added": len(new - old),
                                    "removed": len(old - new)}
    old_state, new_state = _fitted_state(before), _fitted_state(after)
    return {
        "same": before.version == after.version,
        "before": before.version, "after": after.version,
        "inputs_added": [c for c in b["inputs"] if c not in a["inputs"]],
        "inputs_removed": [c for c in a["inputs"] if c not in b["inputs"]],
        "encodings_changed": _changed({c: e["encoding"] for c, e in a["encodings"].items()},
                                      {c: e["encoding"] for c, e in b["encodings"].items()}),
        "transforms_changed": _changed(a["transforms"], b["transforms"]),
        "generated_added": [name for name in names_b if name not in names_a],
        "generated_removed": [name for name in names_a if name not in names_b],
        "vocabularies": vocabularies,
        "label": None if a["label"] == b["label"] else [a["label"], b["label"]],
        "refitted": sorted(k for k in old_state.keys() & new_state.keys() if old_state[k] != new_state[k]),
    }


def _changed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list]:
    """[before, after] of each key both have and whose value changed."""
    return {key: [before[key], after[key]] for key in sorted(before.keys() & after.keys()) if before[key] != after[key]}


def _vocabularies(feature_set: FeatureSet) -> dict[str, set[str]]:
    """Each categorical input's vocabulary, and the entity column's known entities."""
    found = {i.column: set(i.categories) for i in feature_set.categorical}
    for feature in feature_set.features:
        if isinstance(feature, EntityFeatures):
            found[feature.history.entity] = set(feature.history.events)
    return found


def _fitted_state(feature_set: FeatureSet) -> dict[str, Any]:
    """The values learned from the training rows, by what they belong to."""
    state: dict[str, Any] = {f"fill of {i.column}": i.fill for i in feature_set.numeric}
    for feature in feature_set.features:
        if isinstance(feature, TargetEncoding):
            state[feature.names[0]] = (feature.means, feature.prior)
        elif isinstance(feature, Frequency):
            state[feature.names[0]] = feature.frequencies
        elif isinstance(feature, EntityFeatures):
            state[f"history of {feature.history.entity}"] = feature.history.events
    return state


def entity_outputs(feature_set: FeatureSet) -> list[list]:
    """The window outputs of a FeatureSet's entity features; none when it has no entity block."""
    return next(([list(o) for o in f.outputs] for f in feature_set.features if isinstance(f, EntityFeatures)), [])


def with_owner_outputs(use_case: UseCase, runs_dir: str | Path) -> UseCase:
    """`use_case` as it runs: when it reuses another's entity-feature definition, with the owner's window
    outputs (those of the owner's champion package in `runs_dir`) as its `features.entity_outputs`, so
    its feature search adds exactly those instead of searching its own. Other use cases are unchanged."""
    owner = use_case.features.entity_features_from
    if not owner:
        return use_case
    champion: Optional[Path] = newest_package(runs_dir, owner, promoted_only=True)
    if champion is None:
        raise RegistryError(
            f"use case {use_case.name!r} reuses the entity features of {owner!r} (features.entity_features_from), "
            f"whose window outputs come from the champion package of {owner!r}; {runs_dir} has none: run "
            f"`flowline run {owner}` first (its package must be promoted)")
    outputs = entity_outputs(Package.open(champion).feature_set)
    return use_case.model_copy(update={"features": use_case.features.model_copy(update={"entity_outputs": outputs})})
