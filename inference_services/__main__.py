"""Run the flowline model server: python -m flowline.inference_services [NAME=]PACKAGE_DIR ...

This is the container's entry point (the InferenceService runs it with the package
mounted at /mnt/models); `flowline serve` calls the same `serve`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flowline.components.package.model_package import MANIFEST_FILE
from flowline.inference_services.model import DEFAULT_MAX_BATCH
from flowline.inference_services.server import DEFAULT_PORT, HOST_ENV, default_host, serve


def named_package(argument: str) -> tuple[str, str]:
    """NAME=PATH, or PATH alone: then the name is the package's use case."""
    name, separator, path = argument.partition("=")
    if not separator:
        path = argument
        manifest = Path(path) / MANIFEST_FILE
        if not manifest.is_file():
            raise argparse.ArgumentTypeError(f"{path} is not a model package ({MANIFEST_FILE} is missing)")
        name = json.loads(manifest.read_text())["name"]
    return name, path


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help=f"bind address (default: ${HOST_ENV} or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"HTTP port (default {DEFAULT_PORT})")
    parser.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH,
                        help=f"largest batch a request may carry (default {DEFAULT_MAX_BATCH})")
    parser.add_argument("--access-log", action="store_true", help="log every request (off by default: it costs)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flowline.inference_services", description=__doc__.splitlines()[0])
    parser.add_argument("packages", nargs="+", type=named_package, metavar="[NAME=]PACKAGE_DIR")
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    serve(args.packages, args.host or default_host(), args.port, args.max_batch, args.access_log)


if __name__ == "__main__":
    main()
