"""`flowline verify`, `upload` and `download`: model packages and files in object storage."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from flowline.pipelines.cli.common import EXIT_ERROR


def add_parser(commands: argparse._SubParsersAction) -> None:
    upload = commands.add_parser(
        "upload", help="put a file, or a model package (verified, manifest last), in object storage")
    upload.add_argument("source", help="a file (for example a dataset) or a package folder")
    upload.add_argument("destination", help="s3://bucket/key (a file) or s3://bucket/prefix (a package)")
    upload.set_defaults(handler=_upload)

    download = commands.add_parser(
        "download", help="get a file, or a model package (refused unless every file matches its manifest)")
    download.add_argument("source", help="s3://bucket/key, or s3://bucket/prefix with --package")
    download.add_argument("destination", help="the local file, or a new folder for the package")
    download.add_argument("--package", action="store_true", help="the source is a model package: verify it")
    download.set_defaults(handler=_download)

    verify = commands.add_parser("verify", help="check a model package: its files' sha256, its version and, "
                                                "with $FLOWLINE_SIGNING_KEY, its signature")
    verify.add_argument("package", help="the package folder")
    verify.set_defaults(handler=_verify)


def _upload(args: argparse.Namespace) -> int:
    """A destination that is not s3:// is a StorageError, which main() reports."""
    from flowline import storage
    from flowline.package.format import MANIFEST_FILE
    from flowline.package.remote import upload_package

    if (Path(args.source) / MANIFEST_FILE).is_file():
        manifest = upload_package(args.source, args.destination)
        print(f"uploaded package {manifest['name']} {manifest['version']} ({len(manifest['files'])} files, "
              f"verified) to {args.destination}")
        return 0
    if not Path(args.source).is_file():
        print(f"flowline: {args.source} is neither a file nor a model package", file=sys.stderr)
        return EXIT_ERROR
    etag = storage.upload_file(args.source, args.destination)
    print(f"uploaded {args.source} to {args.destination} (ETag {etag})")
    return 0


def _download(args: argparse.Namespace) -> int:
    import shutil

    from flowline import storage
    from flowline.package.remote import download_package

    if args.package:
        cached = download_package(args.source)
        shutil.copytree(cached, args.destination)
        print(f"downloaded and verified the package at {args.source} into {args.destination}")
        return 0
    storage.download_file(args.source, args.destination)
    print(f"downloaded {args.source} to {args.destination}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from flowline.package.format import verify
    from flowline.package.signing import KEY_ENV, NoSigningKeyWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NoSigningKeyWarning)
        manifest = verify(args.package)
    for warning in caught:
        print(f"flowline: warning: {warning.message}", file=sys.stderr)
    keyless = any(issubclass(warning.category, NoSigningKeyWarning) for warning in caught)
    signed = f"signature not checked: ${KEY_ENV} is unset" if keyless else "signature checked"
    print(f"verified: {args.package} ({manifest['name']} version {manifest['version']}, "
          f"{len(manifest['files'])} files, {signed})")
    return 0
