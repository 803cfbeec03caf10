"""Run the flowline model server: python -m flowline.inference_services [NAME=]PACKAGE_DIR ... [--canary ...]

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
    parser.add_argument("--canary", type=named_package, metavar="[NAME=]PACKAGE_DIR",
                        help="a second package for the model NAME, taking --canary-percent of its requests by "
                             "request id (KServe's canaryTrafficPercent, locally)")
    parser.add_argument("--canary-percent", type=int, default=10, help="the canary's share of requests (default 10)")
    parser.add_argument("--prediction-log", help="append one JSON line per answered request (request id, arm, "
                                                 "version) here, to join outcomes back by request id")
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    canary_name, canary_path = args.canary or (None, None)
    if canary_name and canary_name not in {name for name, _ in args.packages}:
        parser.error(f"--canary {canary_name}: no model of that name is served")
    serve([FlowlineModel(name, path, args.max_batch,
                         canary_path=canary_path if name == canary_name else None, canary_percent=args.canary_percent,
                         prediction_log=args.prediction_log)
           for name, path in args.packages], args.host, args.port, args.access_log)


if __name__ == "__main__":
    main()
