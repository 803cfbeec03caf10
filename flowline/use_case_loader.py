"""Where a use case comes from, and where its data is read.

A use case is a built-in (pipelines/use_cases/NAME.yaml) or a YAML file of the user's, checked
against the schema in flowline.use_case; one may reuse another's entity-feature definition. A
cluster run reads its data from object storage or a URL, never from this machine's files.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from flowline.use_case import UseCase, UseCaseError

# The built-in use cases, pipelines/use_cases/*.yaml: a wheel installs the folder under flowline/pipelines, and a
# checkout's flowline/pipelines links to it, so the core finds them without importing the pipelines package.
USE_CASES_DIR = Path(__file__).parent / "pipelines" / "use_cases"


def _format_validation_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "string_type" and isinstance(item.get("input"), (bool, int, float)):
            message = (f"expected text, got {item['input']!r}: write it in quotes (YAML reads 1 unquoted as a "
                       "number, and yes, no, on and off as true and false)")
        lines.append(f"  - {where}: {message}")
    return "\n".join(lines)


def parse_use_case(document: dict, origin: str = "<use case>", folder: Path | None = None) -> UseCase:
    """The use case `document` describes, with the entity-feature definition it reuses filled in
    (`features.entity_features_from`: NAME.yaml in `folder`, else a built-in use case)."""
    try:
        document = _with_reused_definition(document, origin, folder)
        use_case = UseCase.model_validate(document)
    except ValidationError as error:
        raise UseCaseError(f"{origin} is not a valid use case:\n{_format_validation_error(error)}") from None
    return use_case


def _with_reused_definition(document: dict, origin: str, folder: Path | None) -> dict:
    """`document` with the owner's entity_column and amount_columns filled in when it reuses a definition.

    The owner must own it (no chain of reuse), and this use case must declare the columns the
    definition reads, with the same types, and the same time_column: the windows run over it.
    """
    features = document.get("features")
    owner_name = features.get("entity_features_from") if isinstance(features, dict) else None
    if not owner_name or owner_name == document.get("name"):
        return document  # nothing to reuse, or a self-reference the schema names
    where = f"{origin} is not a valid use case:\n  - features.entity_features_from"
    candidates = [path for path in ((folder / f"{owner_name}.yaml") if folder else None,
                                    USE_CASES_DIR / f"{owner_name}.yaml") if path is not None]
    owner_path = next((path for path in candidates if path.is_file()), None)
    if owner_path is None:
        raise UseCaseError(f"{where}: no use case {owner_name!r}: looked for "
                           f"{' and '.join(str(path) for path in candidates)}")
    owner_document = _read_document(owner_path)
    owner_features = owner_document.get("features") if isinstance(owner_document.get("features"), dict) else {}
    if owner_features.get("entity_features_from"):
        raise UseCaseError(f"{where}: {owner_name!r} reuses the definition of "
                           f"{owner_features['entity_features_from']!r} itself; name that owner instead "
                           f"(a definition is reused from its owner, not through a chain)")
    owner = parse_use_case(owner_document, str(owner_path))
    entity, amounts = owner.features.entity_column, owner.features.amount_columns
    if entity is None:
        raise UseCaseError(f"{where}: {owner_name!r} defines no entity features (its features.entity_column is "
                           f"not set)")
    for field, value, owned in (("entity_column", features.get("entity_column"), entity),
                                ("amount_columns", features.get("amount_columns"), amounts)):
        if value is not None and value != owned:
            raise UseCaseError(f"{where}: features.{field} {value!r} differs from {owner_name!r}'s {owned!r}; "
                               f"leave it out when reusing the definition")
    if document.get("time_column") != owner.time_column:
        raise UseCaseError(f"{where}: the definition of {owner_name!r} runs over time_column {owner.time_column!r}; "
                           f"this use case's is {document.get('time_column')!r}")
    columns = document.get("columns") if isinstance(document.get("columns"), dict) else {}
    for column in (entity, owner.time_column, *amounts):
        spec = columns.get(column)
        wanted = owner.columns[column].type
        if not isinstance(spec, dict) or spec.get("type") != wanted:
            raise UseCaseError(f"{where}: the definition of {owner_name!r} reads column {column!r} of type {wanted}; "
                               f"declare it in columns with that type")
    return {**document, "features": {**features, "entity_column": entity, "amount_columns": list(amounts)}}


def load_use_case(name_or_path: str | Path) -> UseCase:
    """Load a use case by name (pipelines/use_cases/NAME.yaml) or from a YAML file path.

    A relative data path is resolved against the folder of the YAML file, and so is the use case
    whose entity-feature definition it reuses (features.entity_features_from).
    """
    path = use_case_file(name_or_path)
    return parse_use_case(_read_document(path), origin=str(path), folder=path.parent)


def use_case_file(name_or_path: str | Path) -> Path:
    """The YAML file a use case's name (built in) or path names; UseCaseError for an unknown name."""
    path = Path(name_or_path)
    if path.suffix.lower() not in (".yaml", ".yml"):
        path = USE_CASES_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            known = ", ".join(built_in_use_cases())
            files = [name for name in (f"{name_or_path}.yaml", f"{name_or_path}.yml") if Path(name).is_file()]
            meant = f" (did you mean the file {files[0]}?)" if files else ""
            raise UseCaseError(f"unknown use case {str(name_or_path)!r}{meant}; built-in use cases: {known}")
    return path


def _read_document(path: Path) -> dict:
    """The mapping a use-case YAML file holds, its relative data path resolved against its folder."""
    if not path.is_file():
        raise UseCaseError(f"use-case file {path} does not exist")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise UseCaseError(f"{path} is not utf-8 text: byte {error.start} cannot be decoded; save the YAML file "
                           "as utf-8") from None
    except yaml.YAMLError as error:
        raise UseCaseError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(document, dict):
        raise UseCaseError(f"{path} must hold a mapping of use-case keys")
    data = document.get("data")
    if isinstance(data, dict) and isinstance(data.get("path"), str) and "://" not in data["path"]:
        data["path"] = str((path.parent / data["path"]).resolve())
    return document


def built_in_use_cases() -> list[str]:
    return sorted(p.stem for p in USE_CASES_DIR.glob("*.yaml"))


REMOTE_PREFIXES = ("s3://", "http://", "https://")


class ClusterDataError(UseCaseError):
    """A cluster run cannot reach the use case's data: it is a file on this machine."""


def cluster_source(use_case: UseCase, source: str = "") -> str:
    """Where a pod reads the use case's data: `source`, else the use case's path, when it is in object
    storage (s3://) or at an http(s) URL.

    A pod has none of this machine's files and no data home, so a local path is never used: the error
    says how to upload the file first. A registered dataset is uploaded too (its file checked against its
    sha256 on the way), rather than read from its public URL, which pods cannot reach under the shipped
    network policies (egress goes to the object store and the API server only).
    """
    if source and "://" in source and not source.startswith(REMOTE_PREFIXES):
        raise ClusterDataError(f"source {source!r}: a cluster run reads s3://, http:// or https:// sources only")
    if source and not source.startswith(REMOTE_PREFIXES):
        raise ClusterDataError(f"source {source!r} is a local path, which a cluster run cannot read; upload it "
                               f"(flowline upload {source} s3://BUCKET/KEY) and give the s3:// URI instead")
    for candidate in (source, use_case.data.path or ""):
        if candidate.startswith(REMOTE_PREFIXES):
            return candidate
    local = use_case.data.path or f"registered dataset {use_case.data.dataset!r}, a file in this machine's data home"
    raise ClusterDataError(
        f"use case {use_case.name!r} reads its data from {local}, which a cluster run cannot see. Upload it "
        f"(flowline upload FILE s3://BUCKET/KEY) and give --source s3://BUCKET/KEY, or let the command upload it "
        f"with --upload-data s3://BUCKET/PREFIX")


def cluster_use_case(use_case: UseCase, source: str = "") -> UseCase:
    """The use case as a compiled pipeline carries it: its data at `cluster_source`, no local path baked in."""
    data = use_case.data.model_copy(update={"path": cluster_source(use_case, source), "dataset": None})
    return use_case.model_copy(update={"data": data})
