"""`flowline init`, `validate` and `datasets`: drafting a use case, checking it against its data, the data home."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flowline.pipelines.cli.common import EXIT_ERROR


def add_parser(commands: argparse._SubParsersAction) -> None:
    init = commands.add_parser("init", help="draft a commented use-case YAML from a CSV or Parquet file")
    init.add_argument("data", metavar="DATA", help="a CSV or Parquet file: a path, an http(s) URL or s3://BUCKET/KEY")
    init.add_argument("--label", metavar="COLUMN", help="the column to predict (default: one named label, target, "
                                                        "class, y or outcome, else the last column)")
    init.add_argument("-o", "--output", metavar="FILE", help="the YAML file to write (default: print it); an "
                                                            "existing file is kept unless --force")
    init.add_argument("--force", action="store_true", help="overwrite the --output file if it exists")
    init.set_defaults(handler=_init)

    validate = commands.add_parser("validate", help="check a use-case YAML against its data: schema, columns, "
                                                    "label values and every row; exit 1 naming every problem")
    validate.add_argument("file", metavar="FILE", help="the use-case YAML")
    validate.set_defaults(handler=_validate)

    datasets = commands.add_parser("datasets", help="list the registered datasets and check them in the data home")
    datasets.set_defaults(handler=_datasets)


def _init(args: argparse.Namespace) -> int:
    from flowline.contract import ContractError
    from flowline.pipelines.scaffold import ScaffoldError, scaffold

    output = Path(args.output) if args.output else None
    if output is not None and output.exists():
        if "://" not in args.data and output.resolve() == Path(args.data).resolve():
            print(f"flowline: init: --output {args.output} is the data file itself; give another file",
                  file=sys.stderr)
            return EXIT_ERROR
        if not args.force:
            print(f"flowline: init: {args.output} exists (your edits?); give --force to overwrite it, or another "
                  "file", file=sys.stderr)
            return EXIT_ERROR
    try:
        text = scaffold(args.data, args.label, args.output)
    except (ScaffoldError, ContractError) as error:
        print(f"flowline: init: {error}", file=sys.stderr)
        return EXIT_ERROR
    if not args.output:
        print(text, end="")
        return 0
    output.write_text(text)
    print(f"wrote {args.output}: review the lines marked 'review', then run flowline validate {args.output}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from flowline.pipelines.scaffold import validate

    problems, notes = validate(args.file)
    for line in notes:
        print(f"note: {line}")
    for line in problems:
        print(f"problem: {line}", file=sys.stderr)
    if problems:
        print(f"{args.file}: {len(problems)} problem(s)", file=sys.stderr)
        return EXIT_ERROR
    print(f"{args.file}: the use case fits its data")
    return 0


def _datasets(args: argparse.Namespace) -> int:
    from flowline.datasets import REGISTRY, DatasetError, data_home, dataset_path

    print(f"data home: {data_home()}")
    problems = 0
    for name in sorted(REGISTRY):
        try:
            dataset_path(name)
            print(f"  {name:28} ok")
        except DatasetError as error:
            problems += 1
            print(f"  {name:28} {error}")
    return EXIT_ERROR if problems else 0
