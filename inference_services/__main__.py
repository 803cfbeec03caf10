"""Run the flowline model server: python -m flowline.inference_services [NAME=]PACKAGE_DIR ...

This is the container's entry point (the InferenceService runs it with the package
mounted at /mnt/models); `flowline serve` calls the same `serve`.
"""

from __future__ import annotations

import argparse

from flowline.inference_services.model import FlowlineModel
from flowline.inference_services.options import add_server_arguments, named_package
from flowline.inference_services.server import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flowline.inference_services", description=__doc__.splitlines()[0])
    parser.add_argument("packages", nargs="+", type=named_package, metavar="[NAME=]PACKAGE_DIR")
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    serve([FlowlineModel(name, path, args.max_batch) for name, path in args.packages], args.host, args.port,
          args.access_log)


if __name__ == "__main__":
    main()
