"""Model packages: a folder with every file listed by sha256 in manifest.json.

A package holds the model folder (model.json and one native file per member, plus
training.json), the FeatureSet, the evaluation (metrics with intervals, threshold,
quality and fairness gates, any fairness mitigation, the champion/challenger
decision), the drift detector, the use case, the lineage (dataset sha256 ->
FeatureSet version -> model files), the model card (model_card.py), JSON and HTML, and the
steps' reports in reports/ (REPORT_FILES: Markdown and self-contained HTML, no scripts).

The manifest lists every file by sha256; the package's version is the hash of that list
(with the format and name), and the manifest is signed with HMAC-SHA256 when a signing key
is configured (signing.py). `verify` refuses a package whose files, version or signature do
not match, or that holds a link or a path leading outside it, before anything is loaded;
`Package.open` only reads a verified one.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import tempfile
import warnings
import weakref
from dataclasses import dataclass
from functools import cached_property
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from flowline import fitted_rows
from flowline.drift import DETECTOR_CONFIG, DETECTOR_DIR, REFERENCE_FIELD
from flowline.features.feature_set import FeatureSet
from flowline.package.signing import (
    KEY_ENV,
    NoSigningKeyWarning,
    content_version,
    signature,
    signed_json,
    signature_matches,
    signing_key,
)
from flowline.models.ensemble import MODEL_FILE, Ensemble
from flowline.datasets import sha256_of_file
from flowline.use_case import UseCase

FORMAT = "flowline.package/v3"
MANIFEST_FILE = "manifest.json"
SIGNATURE = "signature"
VERSIONED_FIELDS = ("format", "name", "files")  # the version is the hash of these; the signature covers all fields
SAFE_VERSION = re.compile(r"[0-9A-Za-z]{1,64}")  # used in cache folder names before the version is checked
SHA256 = re.compile(r"[0-9a-f]{64}")
MODEL_DIR = "model"
FEATURE_SET_FILE = "feature_set.json"
EVALUATION_FILE = "evaluation.json"
USE_CASE_FILE = "use_case.json"
LINEAGE_FILE = "lineage.json"
TRAINING_FILE = "training.json"  # in MODEL_DIR: the candidates, the selection and the blend
CARD_JSON = "model_card.json"
CARD_HTML = "model_card.html"
DRIFT_DIR = "drift"
# What every reader needs, so every package holds: the model, its features, its use case, its evaluation.
REQUIRED_FILES = (f"{MODEL_DIR}/{MODEL_FILE}", FEATURE_SET_FILE, USE_CASE_FILE, EVALUATION_FILE)
REPORTS_DIR = "reports"  # the steps' reports for people, each a file a browser or editor opens by its extension
# The explanation report stays out: its plots show sample rows' raw values, and a package holds only summaries.
REPORT_FILES = {"profile": "profile.md", "feature_search": "feature_search.md", "evaluation": "evaluation.md",
                "fairness": "fairness.html"}


class PackageError(ValueError):
    """A package is incomplete or its files do not match its manifest."""


def _files_of(package: Path) -> dict[str, str]:
    """Every file under the package but the manifest, with its sha256. A symbolic link or anything
    else that is not a regular file or folder is refused: it could point outside the package."""
    files = {}
    for folder, dirs, names in os.walk(package):  # does not follow links: a linked folder is in `dirs`
        for name in [*dirs, *names]:
            path = Path(folder, name)
            relative = path.relative_to(package).as_posix()
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise PackageError(f"package {package}: {relative} is a symbolic link; "
                                   "a package holds only regular files")
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise PackageError(f"package {package}: {relative} is not a regular file; refusing it")
            if stat.S_ISREG(mode) and relative != MANIFEST_FILE:
                files[relative] = sha256_of_file(path)
    return dict(sorted(files.items()))


def write_manifest(package: Path, name: str) -> dict:
    """List every file by sha256, version the package by the hash of that content, and sign the
    manifest when a signing key is configured (signing.py)."""
    manifest = {"format": FORMAT, "name": name, "files": _files_of(package)}
    manifest["version"] = content_version(manifest)
    manifest["created_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    key = signing_key()
    if key:
        manifest[SIGNATURE] = signature(manifest, key)
    (package / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
    return manifest


def check_manifest(manifest: object, where: str) -> dict[str, str]:
    """The manifest's files by name, once its fields are well formed and every listed name is a
    relative path inside the package; PackageError naming the field otherwise. Run before any
    listed name is used as a path (remote.py downloads by these names)."""
    if not isinstance(manifest, dict):
        raise PackageError(f"{where}: expected a JSON object")
    if manifest.get("format") != FORMAT:
        raise PackageError(f"{where}: format {str(manifest.get('format'))[:40]!r}, expected {FORMAT!r}")
    for field in ("name", "version", "created_at"):
        if not isinstance(manifest.get(field), str):
            raise PackageError(f"{where}: {field} must be a string")
    if not SAFE_VERSION.fullmatch(manifest["version"]):
        raise PackageError(f"{where}: version must be letters and digits, not {manifest['version'][:40]!r}")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise PackageError(f"{where}: files must map each file's path to its sha256")
    for name, digest in files.items():
        inside(name, "files entry", where)
        if name == MANIFEST_FILE or not (isinstance(digest, str) and SHA256.fullmatch(digest)):
            raise PackageError(f"{where}: files entry {name!r} must map a file other than {MANIFEST_FILE} "
                               f"to a sha256 (64 hex digits)")
    return files


def read_manifest(package_dir: str | Path) -> dict:
    """A package folder's manifest, its fields well formed (`check_manifest`); PackageError when it is missing,
    unreadable or malformed. Nothing else of the package is checked: `verify` does that."""
    manifest_path = Path(package_dir) / MANIFEST_FILE
    if not manifest_path.is_file():
        raise PackageError(f"{package_dir} is not a model package: {MANIFEST_FILE} is missing")
    try:
        manifest = signed_json(manifest_path.read_text())
    except ValueError as error:
        raise PackageError(f"{manifest_path} is unreadable: {error}") from None
    check_manifest(manifest, str(manifest_path))
    return manifest


def inside(name: object, field: str, where: str) -> str:
    """`name` when it is a relative path that stays inside its folder: no leading '/', no '..' or '.'
    part, no empty part, no backslash; PackageError naming `field` otherwise."""
    if not isinstance(name, str) or "\\" in name or any(part in ("", ".", "..") for part in name.split("/")):
        raise PackageError(f"{where}: {field} {str(name)[:80]!r} is not a relative path inside the package "
                           f"(no leading '/', no '..')")
    return name


def _check_references(package: Path, listed: dict[str, str]) -> None:
    """Paths named inside the package's files (model.json's member files, the detector's reference),
    where the package has them, must be files of the package, listed in the manifest."""
    model_json = f"{MODEL_DIR}/{MODEL_FILE}"
    members = _json_of(package, model_json).get("members", []) if model_json in listed else []
    if not isinstance(members, list) or not all(isinstance(m, dict) for m in members):
        raise PackageError(f"package {package}: {model_json} members must be a list of objects")
    for i, member in enumerate(members):
        names = member.get("files", [])
        for name in names if isinstance(names, list) else [names]:
            _listed(package, listed, MODEL_DIR, name, f"{model_json} members[{i}].files")
    detector = f"{DRIFT_DIR}/{DETECTOR_DIR}"
    if f"{detector}/{DETECTOR_CONFIG}" in listed:
        config = _json_of(package, f"{detector}/{DETECTOR_CONFIG}")
        field = f"{detector}/{DETECTOR_CONFIG} {REFERENCE_FIELD}"
        _listed(package, listed, detector, config.get(REFERENCE_FIELD), field)


def _json_of(package: Path, name: str) -> dict:
    try:
        document = json.loads((package / name).read_text())
    except (OSError, ValueError) as error:
        raise PackageError(f"package {package}: {name} is unreadable: {error}") from None
    if not isinstance(document, dict):
        raise PackageError(f"package {package}: {name} must hold a JSON object")
    return document


def _listed(package: Path, listed: dict[str, str], folder: str, name: object, field: str) -> None:
    inside(name, field, f"package {package}")
    if f"{folder}/{name}" not in listed:
        raise PackageError(f"package {package}: {field} names {folder}/{name}, which is not a file of the package")


def verify(package_dir: str | Path) -> dict:
    """Return the manifest when the package is intact and authentic; raise PackageError naming the first problem.

    Refused: a missing or malformed manifest (a key twice included); a listed file that is missing or
    altered; a file the manifest does not list; a package without one of REQUIRED_FILES; a symbolic
    link or other non-regular file; a path (in the manifest, model.json or the detector config) that
    is absolute, has '..' or names no file of the package; a version that is not the hash of the
    manifest's content; and, when a signing key is configured ($FLOWLINE_SIGNING_KEY), an unsigned or
    wrongly signed manifest. Without a key, a NoSigningKeyWarning says the author is unchecked. Model
    files can execute code when loaded, so nothing in an unverified package is ever opened.
    """
    return _verified(Path(package_dir), say_unkeyed=True)


def _verified(package: Path, say_unkeyed: bool) -> dict:
    """`verify`; `say_unkeyed` False for a copy of a folder verified just before, whose missing key was said then."""
    manifest = read_manifest(package)
    listed = manifest["files"]
    actual = _files_of(package)
    for name, expected in listed.items():
        if name not in actual:
            raise PackageError(f"package {package}: {name} is listed in the manifest but missing")
        if actual[name] != expected:
            raise PackageError(
                f"package {package}: {name} has sha256 {actual[name]}, the manifest says {expected}; refusing it"
            )
    unlisted = sorted(set(actual) - set(listed))
    if unlisted:
        raise PackageError(f"package {package}: {unlisted[0]} is not listed in the manifest; refusing it")
    absent = [name for name in REQUIRED_FILES if name not in listed]
    if absent:
        raise PackageError(f"package {package}: it has no {absent[0]}, which every package holds; refusing it")
    computed = content_version({field: manifest[field] for field in VERSIONED_FIELDS})
    if computed != manifest["version"]:
        raise PackageError(f"package {package}: the manifest states version {manifest['version']}, but its content "
                           f"hashes to {computed}; refusing it")
    _check_references(package, listed)
    _check_signature(package, manifest, say_unkeyed)
    return manifest


def _check_signature(package: Path, manifest: dict, say_unkeyed: bool) -> None:
    key = signing_key()
    signed = {field: value for field, value in manifest.items() if field != SIGNATURE}
    if key is None:
        if not say_unkeyed:
            return
        unchecked = "signature" if SIGNATURE in manifest else "author"
        warnings.warn(f"package {package}: no signing key (${KEY_ENV}), so its {unchecked} is not checked; "
                      "anyone who can write the package can change it", NoSigningKeyWarning, stacklevel=4)
    elif SIGNATURE not in manifest:
        raise PackageError(f"package {package}: the manifest is unsigned and a signing key is set (${KEY_ENV}); "
                           "refusing it")
    elif not signature_matches(signed, manifest[SIGNATURE], key):
        raise PackageError(f"package {package}: the manifest's signature does not match the signing key (${KEY_ENV}): "
                           f"it was changed after signing or signed with another key; refusing it")


def _regular_file_bytes(path: Path) -> bytes:
    """The bytes of `path` if it is a regular file; OSError for anything else (a link put there since it was checked,
    to /dev/zero say, or a FIFO, which would never end or never open)."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(descriptor, "rb") as file:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        return file.read()


def refuse_other_use_case(path: str | Path, served_as: str, new: str, served: str) -> None:
    """A live reload's check: raise PackageError when the package at `path` holds another use case than the
    one served under `served_as` (signed and intact, it would still fail every request of its clients)."""
    if new != served:
        raise PackageError(f"{path} holds a model of use case {new!r}; {served_as} serves {served!r}: serve it "
                           "under a name of its own")


@dataclass(frozen=True)
class Package:
    """A verified package: the one way to read one.

    `open` checks every file against the manifest (and its signature) before anything is read,
    because model files can run code when loaded, and every part is then read from a private copy
    of what was checked (`path`). The parts are read when first asked for, so a reader that needs
    only the evaluation never loads the model.
    """

    path: Path  # the private copy, removed with the Package
    manifest: dict
    source: Path  # the folder that was verified and copied

    def __repr__(self) -> str:  # not every file's sha256 and the private copy's name, as a notebook cell shows it
        files = len(self.manifest["files"])
        return f"Package({self.manifest['name']} {self.version}, {files} files, from {self.source})"

    @classmethod
    def open(cls, package_dir: str | Path) -> Package:
        """Verify the folder, copy its files into a private folder and verify the copy, which is what is read.

        Read from the folder itself, the parts would be opened again after they were checked: a writer of the
        folder without the signing key could swap a model file in after its check and back after the load,
        and a new version copied over the folder during a load would be read half old, half new. Raises
        PackageError naming the folder when it changed while it was copied."""
        source = Path(package_dir)
        manifest = verify(source)
        try:
            private = Path(tempfile.mkdtemp(prefix="flowline-package-"))  # readable by this user alone
        except OSError as error:
            raise PackageError(f"{source}: no private copy can be made in {tempfile.gettempdir()}: "
                               f"{error.strerror}") from None
        package = cls(private, manifest, source)
        weakref.finalize(package, shutil.rmtree, private, True)
        for name in [*manifest["files"], MANIFEST_FILE]:
            try:
                data = _regular_file_bytes(source / name)
            except OSError as error:
                raise PackageError(f"{source} changed while it was read: {name}: {error.strerror}; load it again "
                                   "once it is complete") from None
            try:
                (private / name).parent.mkdir(parents=True, exist_ok=True)
                (private / name).write_bytes(data)
            except OSError as error:  # the temporary folder's disk, not the package
                raise PackageError(f"{source}: its private copy in {tempfile.gettempdir()} cannot be written: "
                                   f"{error.strerror}") from None
        try:  # no catch_warnings to keep the copy's warning quiet: leaving it would let every warning shown
            copied = _verified(private, say_unkeyed=False)  # once in the process show again
        except PackageError as error:
            said = str(error).replace(str(private), str(source))
            raise PackageError(f"{source} changed while it was read: {said}; load it again once it is complete") \
                from None
        if copied != manifest:
            raise PackageError(f"{source} changed while it was read: version {manifest['version']} became "
                               f"{copied['version']}; load it again once the copy is complete")
        return package

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def created_at(self) -> str:
        return self.manifest["created_at"]

    @property
    def built_at(self) -> float:
        """`created_at` in seconds since the epoch."""
        return datetime.fromisoformat(self.created_at).timestamp()

    @cached_property
    def use_case(self) -> UseCase:
        return UseCase.model_validate_json((self.path / USE_CASE_FILE).read_text())

    @cached_property
    def feature_set(self) -> FeatureSet:
        return FeatureSet.load(self.path / FEATURE_SET_FILE)

    @cached_property
    def evaluation(self) -> dict:
        return json.loads((self.path / EVALUATION_FILE).read_text())

    @cached_property
    def model(self) -> Ensemble:
        return Ensemble.load(self.path / MODEL_DIR)

    @property
    def drift_dir(self) -> Path:
        return self.path / DRIFT_DIR

    @cached_property
    def fitted_rows(self) -> Optional[np.ndarray]:
        """The fingerprints of the rows the model was fitted on (fitted_rows.py); None for a package built before
        packages kept them."""
        path = self.path / fitted_rows.FITTED_ROWS_FILE
        return fitted_rows.load(path) if path.is_file() else None

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Scores for a frame of rows already held to the contract (ingest's typed rows, as evaluate reads them):
        probabilities (binary) or predictions (regression). Nothing here checks the rows: a category in another
        case, a blank the contract refuses, a time that does not parse are scored as unseen or missing values,
        where the server answers 400. For raw rows, `flowline.scoring.Scorer` checks them as the server does."""
        return self.model.predict(self.feature_set.transform(frame))
