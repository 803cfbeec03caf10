"""Model packages in object storage: uploaded whole, downloaded only when every file verifies.

Upload verifies the folder first and puts the manifest last, so a reader never finds a
manifest whose files are not all there. Download reads the manifest, checks that every name
it lists stays inside the package, fetches those files into a fresh folder, and verifies the
folder against it (hashes, version and, with a signing key, the signature). A corrupted, missing or
extra file is refused with PackageError and nothing is left behind; a verified copy is
kept in the cache, named by the package's version, and reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from flowline import storage
from flowline.datasets import cache_home
from flowline.package.format import MANIFEST_FILE, PackageError, check_manifest, verify

CACHE_ENV = "FLOWLINE_PACKAGE_CACHE"


def cache_root() -> Path:
    """Where downloaded packages are kept: $FLOWLINE_PACKAGE_CACHE, else `cache_home()`/packages
    (~/.cache/flowline/packages; in the image /tmp/cache/flowline/packages)."""
    return Path(os.environ.get(CACHE_ENV) or cache_home() / "packages")


def upload_package(package_dir: str | Path, uri: str) -> dict:
    """Verify the package, then put its files under `uri` (s3://bucket/prefix), the manifest last."""
    manifest = verify(package_dir)
    location, client = storage.S3Location.parse(uri), storage.s3_client()
    for name in [*sorted(manifest["files"]), MANIFEST_FILE]:
        storage.upload_file(Path(package_dir) / name, location.uri(name), client)
    return manifest


def manifest_at(uri: str, client=None) -> dict:
    """The manifest of the package stored under `uri`, once its fields and file names are well formed."""
    text = storage.read_bytes(storage.S3Location.parse(uri).uri(MANIFEST_FILE), client)
    try:
        manifest = json.loads(text)
    except ValueError as error:
        raise PackageError(f"{uri}/{MANIFEST_FILE} is unreadable: {error}") from None
    check_manifest(manifest, f"{uri}/{MANIFEST_FILE}")
    return manifest


def download_package(uri: str, cache: str | Path | None = None) -> Path:
    """A verified local copy of the package under `uri`; PackageError if any file does not match."""
    location, client = storage.S3Location.parse(uri), storage.s3_client()
    manifest = manifest_at(uri, client)
    root = Path(cache or cache_root())
    target = root / f"{hashlib.sha256(uri.encode()).hexdigest()[:16]}-{manifest['version']}"
    if target.is_dir():
        try:
            verify(target)
            return target
        except PackageError:
            shutil.rmtree(target)  # a damaged copy: fetch it again
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=root))
    try:
        for name in [*manifest["files"], MANIFEST_FILE]:
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            storage.download_file(location.uri(name), staging / name, client)
        try:
            verify(staging)
        except PackageError as error:
            raise PackageError(f"{uri}: {str(error).replace(str(staging), 'the download')}") from None
        try:
            staging.rename(target)
        except OSError:  # another process (a second worker) put its copy there first: use it, verified as any
            if not target.is_dir():
                raise
            verify(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
