"""Manifest versions and signatures: the version is the sha256 of the manifest's content, and the
signature an HMAC-SHA256 over the whole manifest, with a key from $FLOWLINE_SIGNING_KEY.

Whoever holds the key can sign a package; whoever lacks it cannot make a package that a
keyed server accepts, even after rewriting every hash and the version. On a cluster the key
lives in the Kubernetes Secret `flowline-signing-key` and reaches the serving and drift
pods as this variable through the ServingRuntimes' `secretKeyRef`
(kustomize/base/serving-runtimes.yaml). Without a key, packages are checked for integrity
only (hashes and version), and `verify` warns.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any, Optional

KEY_ENV = "FLOWLINE_SIGNING_KEY"
# The Kubernetes Secret (and its key) that puts KEY_ENV into the pods that sign or verify packages.
POD_SECRET, POD_SECRET_KEY = "flowline-signing-key", "key"
ALGORITHM = "hmac-sha256"


def signed_json(text: str | bytes) -> Any:
    """Signed JSON (a manifest, an audit record) parsed with each key of an object once. With a key written
    twice, json.loads keeps the last: a reader of the text could see one value and the check another.
    Raises ValueError naming the key."""
    def unique(pairs: list[tuple[str, Any]]) -> dict:
        keys = [key for key, _ in pairs]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if repeated:
            raise ValueError(f"key {repeated[0]!r} appears more than once in an object")
        return dict(pairs)

    return json.loads(text, object_pairs_hook=unique)


class NoSigningKeyWarning(UserWarning):
    """A package was checked without a signing key: its files match, but its author is unchecked."""


def signing_key() -> Optional[bytes]:
    """The key from $FLOWLINE_SIGNING_KEY, or None when it is unset or empty."""
    key = os.environ.get(KEY_ENV, "")
    return key.encode() if key else None


def canonical(document: dict) -> bytes:
    """One byte string per document, whatever the key order or spacing of the file it came from."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def content_version(document: dict) -> str:
    """The first 12 hex digits of the sha256 of a document: a package's version from its manifest content."""
    return hashlib.sha256(canonical(document)).hexdigest()[:12]


def signature(document: dict, key: bytes) -> dict:
    """The manifest's `signature` entry for `document` (the manifest without it)."""
    return {"algorithm": ALGORITHM, "value": hmac.new(key, canonical(document), hashlib.sha256).hexdigest()}


def signature_matches(document: dict, signed: object, key: bytes) -> bool:
    """Whether `signed` (a manifest's `signature` entry) is this key's signature of `document`, in constant time."""
    if not isinstance(signed, dict) or signed.get("algorithm") != ALGORITHM or not isinstance(signed.get("value"), str):
        return False
    # Bytes, not str: compare_digest raises TypeError on a non-ASCII str, which a forger controls.
    return hmac.compare_digest(signature(document, key)["value"].encode(), signed["value"].encode())
