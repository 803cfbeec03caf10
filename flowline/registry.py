"""The local model registry: the runs and packages that a runs folder's audit log records, read back.

Not a second store: every fact comes from the verified audit log (`runs/audit.jsonl`, written by
local runs: `pipeline_run`, `package` and `gate_decision` records) and from the packages
themselves, opened through `Package.open`. A package whose folder is gone keeps its stage, and the commands
that would use it name its recorded path; a runs folder moved whole is read where it is.

Each package has a stage, decided from its use case's records alone:
- `champion`: the package of its use case promoted last (the one a new run must beat): by its run's
  decision `promote`, or by hand (`champion` records, written by `choose_champion`: a local rollback);
- `retired`: promoted once, since replaced by another champion;
- `rejected`: failed a quality or fairness gate, or was kept because it was not significantly
  better than the champion it was compared with (or was left undecided before the champion);
- `challenger`: packaged after the champion with no decision recorded yet (a run that stopped
  between its package and its decision, or one still deciding).

`resolve_package` is the one way a command turns what a person typed (a package folder, an
s3:// prefix, a use case's name or YAML path, or a package version or its unique prefix) into a
package.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from flowline import audit
from flowline.package.format import CARD_HTML, CARD_JSON, MANIFEST_FILE, Package, PackageError
from flowline.storage import is_s3

STAGES = ("champion", "challenger", "rejected", "retired")
CHAMPION_ACTION = "champion"  # an audit record that makes a package its use case's champion by hand
SUMMARY_FILE = "summary.json"  # a local run's summary, in its run folder


class RegistryError(FileNotFoundError):
    """No package, or more than one, matches what was asked; the message lists what exists."""


@dataclass
class Entry:
    """One recorded package: what its records say, and its stage."""

    version: str
    use_case: str
    path: str
    created_at: str
    dataset_sha256: Optional[str] = None
    decision: Optional[str] = None
    reason: Optional[str] = None
    gates_passed: Optional[bool] = None
    gates: dict[str, bool] = field(default_factory=dict)
    fairness: dict[str, str] = field(default_factory=dict)
    run_dir: Optional[str] = None
    stage: str = "challenger"
    found: bool = True  # its folder exists
    promoted_at: int = 0  # the audit record that last made it the champion (its decision, or one by hand); 0: never

    def existing(self) -> "Entry":
        """Itself; RegistryError when its folder is gone."""
        if not self.found:
            raise RegistryError(f"package {self.version} of use case {self.use_case!r} ({self.stage}) is recorded at "
                                f"{self.path}, but its folder is gone: put it back (a runs folder moved whole is "
                                "found where it is)")
        return self

    def package(self) -> Package:
        """The package itself, verified against its manifest and against the version the audit log recorded at
        its path: a package re-hashed after an edit verifies alone, but is not the package its run built."""
        package = Package.open(self.path)
        if package.version != self.version:
            raise PackageError(f"package {self.path}: version {package.version}, but the audit log recorded "
                               f"{self.version} there: it was changed and hashed again since its run built it")
        return package

    def decided_by(self) -> dict[str, float]:
        """The metrics its gates judged (every test metric when the use case sets no gates), on test."""
        evaluation = self.package().evaluation
        gated = {name: gate["value"] for name, gate in evaluation["gates"].items()}
        return gated or dict(evaluation["metrics"])

    def reports(self) -> dict[str, str]:
        """Its readable reports, once the package verifies (a reader must not be shown an edited card): the model
        card, and the reports its run's summary.json lists."""
        self.package()
        found = {"model_card": str(Path(self.path) / CARD_HTML)}  # as the summary names it: listed once
        summary = Path(self.run_dir or "", SUMMARY_FILE)
        if self.run_dir and summary.is_file():
            found.update({name: str(path) for name, path in json.loads(summary.read_text()).get("reports", {}).items()})
        return found

    def model_card(self) -> dict[str, Any]:
        """Its model card (model_card.json), once the package verifies."""
        self.package()
        return json.loads((Path(self.path) / CARD_JSON).read_text())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Run:
    """One local run, as its `pipeline_run` record says, with the package it produced (if any)."""

    run_dir: str
    use_case: str
    at: str
    outcome: str
    wall_seconds: Optional[float] = None
    error: Optional[str] = None
    package_version: Optional[str] = None
    use_case_file: Optional[str] = None  # the YAML it ran from (older records name none)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Registry:
    """The runs and the recorded packages of a runs folder, oldest first. A package whose folder is gone keeps
    its stage (a deleted champion is still the champion, not its predecessor again) but is not in `packages`."""

    runs_dir: str
    runs: list[Run]
    recorded: list[Entry]

    @property
    def packages(self) -> list[Entry]:
        """The recorded packages whose folders exist."""
        return [entry for entry in self.recorded if entry.found]

    def of(self, use_case: str) -> list[Entry]:
        return [entry for entry in self.packages if entry.use_case == use_case]

    def use_cases(self) -> list[str]:
        return sorted({entry.use_case for entry in self.recorded} | {run.use_case for run in self.runs})

    def champion(self, use_case: str) -> Optional[Entry]:
        """The champion of `use_case`, even when its folder is gone (`Entry.found`)."""
        return next((entry for entry in self.recorded if entry.use_case == use_case and entry.stage == "champion"),
                    None)

    def newest(self, use_case: str) -> Optional[Entry]:
        found = self.of(use_case)
        return found[-1] if found else None

    def version(self, prefix: str) -> Entry:
        """The package whose version is `prefix` or starts with it; RegistryError when none or several do."""
        if not prefix.strip():
            raise RegistryError("an empty package version: give a version, or a prefix of one (`flowline models` "
                                "lists them)")
        found = [entry for entry in self.recorded if entry.version == prefix] or \
                [entry for entry in self.recorded if entry.version.startswith(prefix)]
        if len(found) == 1:
            return found[0].existing()
        if found:
            raise RegistryError(f"version {prefix!r} is ambiguous: it starts "
                                f"{', '.join(entry.version for entry in found)}; give more of it")
        known = ", ".join(f"{entry.version} ({entry.use_case})" for entry in self.packages) or "none"
        raise RegistryError(f"no package of version {prefix!r} under {self.runs_dir}; packages: {known}")


def read(runs_dir: str | Path) -> Registry:
    """The registry of `runs_dir`, read from its audit log (verified first, after the head a writer stopped
    before is written, as the next append would); empty when it has none."""
    try:
        records = audit.read(Path(runs_dir) / audit.AUDIT_FILE)
    except audit.NoAuditLog:  # no run yet (a log removed with its head left behind is an AuditError)
        records = []
    runs: list[Run] = []
    entries: dict[str, Entry] = {}
    for record in records:
        what = record["what"]
        if record["action"] == "pipeline_run" and "run_dir" in what:
            runs.append(Run(what["run_dir"], what.get("use_case", ""), record["at"], what.get("outcome", ""),
                            what.get("wall_seconds"), what.get("error"), use_case_file=what.get("use_case_file")))
        elif record["action"] == "package":  # a version packaged again moves to the end: it is the newest
            entries.pop(what["package_version"], None)
            entries[what["package_version"]] = Entry(what["package_version"], what["use_case"], what["package"],
                                                     record["at"], what.get("dataset_sha256"))
        elif record["action"] == "gate_decision" and what.get("package_version") in entries:
            entry = entries[what["package_version"]]
            entry.decision, entry.reason = what.get("decision"), what.get("reason")
            entry.gates_passed, entry.gates = what.get("gates_passed"), what.get("gates", {})
            entry.fairness = what.get("fairness", {})
            entry.promoted_at = record["seq"] if entry.decision == "promote" else entry.promoted_at
        elif record["action"] == CHAMPION_ACTION and what.get("package_version") in entries:
            entries[what["package_version"]].promoted_at = record["seq"]
    # A run folder is made directly in the runs folder and recorded by its absolute path: one not found there
    # is looked for under the runs folder as it is now (moved, restored from a backup, mounted elsewhere).
    relocated = {run.run_dir: Path(runs_dir, Path(run.run_dir).name) for run in runs
                 if not Path(run.run_dir).is_dir() and Path(runs_dir, Path(run.run_dir).name).is_dir()}
    for entry in entries.values():
        owner = next((run for run in runs if Path(entry.path).is_relative_to(run.run_dir)), None)
        if owner is not None:
            if owner.run_dir in relocated:
                entry.path = str(relocated[owner.run_dir] / Path(entry.path).relative_to(owner.run_dir))
            entry.run_dir, owner.package_version = str(relocated.get(owner.run_dir, owner.run_dir)), entry.version
        entry.found = Path(entry.path).is_dir()
    for run in runs:
        run.run_dir = str(relocated.get(run.run_dir, run.run_dir))
    recorded = list(entries.values())
    _set_stages(recorded)
    return Registry(str(runs_dir), runs, recorded)


def _set_stages(entries: list[Entry]) -> None:
    """The stages the module's docstring defines, per use case, from oldest to newest."""
    for use_case in {entry.use_case for entry in entries}:
        mine = [entry for entry in entries if entry.use_case == use_case]
        promoted = max(mine, key=lambda entry: entry.promoted_at)
        champion = mine.index(promoted) if promoted.promoted_at else -1
        for index, entry in enumerate(mine):
            if entry.promoted_at:
                entry.stage = "champion" if index == champion else "retired"
            elif entry.decision is None and index > champion:
                entry.stage = "challenger"
            else:
                entry.stage = "rejected"


def choose_champion(runs_dir: str | Path, version: str, reason: str) -> tuple[Entry, Optional[Entry]]:
    """Make the package of `version` (or a unique prefix) its use case's champion by hand, as the audit log's
    `champion` record (a local rollback: `flowline champion`); return it and the champion it replaces. Refused
    (RegistryError) for a package whose folder is gone, one that failed a quality or fairness gate, or the
    champion itself."""
    registry = read(runs_dir)
    chosen = registry.version(version)
    before = registry.champion(chosen.use_case)
    if chosen is before:
        raise RegistryError(f"package {chosen.version} is the champion of use case {chosen.use_case!r} already")
    if chosen.gates_passed is False:
        raise RegistryError(f"package {chosen.version} failed its gates ({chosen.reason}): it cannot be the champion")
    if not reason.strip():
        raise RegistryError("give a reason: the audit log keeps why the champion was changed by hand")
    audit.append(Path(runs_dir) / audit.AUDIT_FILE, CHAMPION_ACTION, {
        "use_case": chosen.use_case, "package_version": chosen.version, "package": chosen.path,
        "replaces": before.version if before else None, "reason": reason.strip()})
    return chosen, before


def packages_of(runs_dir: str | Path, use_case_name: str) -> list[Path]:
    """The packages that local runs of `use_case_name` recorded in `runs_dir`'s audit log, oldest first,
    leaving out any whose folder is gone."""
    return [Path(entry.path) for entry in read(runs_dir).of(use_case_name)]


def newest_package(runs_dir: str | Path, use_case_name: str, promoted_only: bool = False) -> Path | None:
    """The newest package a local run of `use_case_name` left under `runs_dir`, or None; with
    `promoted_only`, the champion, that is the one a deployment would be serving now (RegistryError when
    its folder is gone: a run must not be compared with the champion before it instead)."""
    registry = read(runs_dir)
    found = registry.champion(use_case_name) if promoted_only else registry.newest(use_case_name)
    return Path(found.existing().path) if found else None


def latest_package(runs_dir: str | Path, use_case_name: str) -> Path:
    """The newest package of `use_case_name` under `runs_dir`; RegistryError when there is none."""
    found = newest_package(runs_dir, use_case_name)
    if found is None:
        raise RegistryError(
            f"no package of use case {use_case_name!r} under {runs_dir}; run `flowline run {use_case_name}` first")
    return found


class NotChampionWarning(UserWarning):
    """A use case's newest package, taken by its name, is one its own run did not promote."""


def _not_chosen(name: str, newest: Entry, champion: Optional[Entry]) -> str:
    why = "failed its gates" if newest.gates_passed is False else "was not promoted over the champion"
    instead = (f"the champion is {champion.version}: give its version to use it" if champion is not None
               else "no package of it was promoted")
    return f"use case {name!r}: its newest package, {newest.version}, {why}; {instead}"


def resolve_package(target: str, runs_dir: str | Path, champion: bool = False) -> str:
    """The package `target` names: a package folder (one with a manifest) or s3:// prefix as given; a use case, by its name
    (built-in or recorded in `runs_dir`) or its YAML path, gives its newest package (with `champion`,
    its champion); a package version, or a unique prefix of one, gives that package."""
    from flowline.use_case import UseCaseError
    from flowline.use_case_loader import built_in_use_cases, load_use_case

    if is_s3(target) or (Path(target) / MANIFEST_FILE).is_file():
        return target
    registry = read(runs_dir)
    name = load_use_case(target).name if Path(target).suffix in (".yaml", ".yml") else target
    if name in registry.use_cases() or name in built_in_use_cases():
        found = registry.champion(name) if champion else registry.newest(name)
        if found is None:
            what = "promoted package" if champion else "package"
            raise RegistryError(f"no {what} of use case {name!r} under {runs_dir}; run `flowline run {name}` first")
        found.existing().package()
        if found.gates_passed is False or found.stage == "rejected":
            warnings.warn(_not_chosen(name, found, registry.champion(name)), NotChampionWarning, stacklevel=2)
        return found.path
    if Path(target).is_dir():  # a folder that is no package and names no use case (or one named like it)
        raise UseCaseError(f"{target} is a folder without {MANIFEST_FILE}, so not a model package, and no use "
                           f"case or package version under {runs_dir} is called that")
    if not any(entry.version.startswith(target) for entry in registry.packages):
        known = ", ".join(sorted(set(registry.use_cases() + built_in_use_cases())))
        raise UseCaseError(f"{target!r} is no package folder, use case or package version under {runs_dir}; "
                           f"use cases: {known}; `flowline models` lists the versions")
    found = registry.version(target)
    found.existing().package()
    return found.path
