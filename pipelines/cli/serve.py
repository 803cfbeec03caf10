"""`flowline serve`: a model package with the KServe model server."""

from __future__ import annotations

import argparse

from flowline.inference_services.options import add_server_arguments
from flowline.pipelines.cli.common import add_runs_dir_argument, package_path


def add_parser(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="serve a model package with the KServe model server")
    serve.add_argument("target", metavar="PACKAGE_DIR|USE_CASE",
                       help="a package folder, or a use case whose newest local run is served")
    serve.add_argument("--name", help="model name (default: the use case's name)")
    add_runs_dir_argument(serve, "where to look for a use case's runs")
    add_server_arguments(serve)
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from flowline.inference_services.model import FlowlineModel
    from flowline.inference_services.options import named_package
    from flowline.inference_services.server import serve

    name, path = named_package(package_path(args.target, args.runs_dir))
    print(f"flowline: serving {path} as model {args.name or name!r}")
    serve([FlowlineModel(args.name or name, path, args.max_batch)], args.host, args.port, args.access_log)
    return 0
