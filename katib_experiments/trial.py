"""A Katib trial: train one parameter set and print its validation score for Katib's StdOut collector.

    python -m flowline.katib_experiments.trial --use-case churn --family xgboost \
        [--source URL] [--feature-plan JSON] --eta=0.1 --max_depth=4 ...

The trial prepares the data as the pipeline does (flowline/prepare.py: the use case's data
or `--source`, the contract, customer rows from a transaction log, the fixed split), fits the
FeatureSet from `--feature-plan` (the pipeline's plan), or searches a plan itself as the
features step would; the trial fits and scores on the search sample (flowline/splitting.py,
`search_sample`), as the Optuna backend does, cross-validated on small data (`trial_score`,
flowline/models/families.py). It prints only metric lines to
stdout: the validation score at every intermediate step (so `medianstop` can stop a
weak trial), then the final score and `iterations=N` (rounds or epochs, for the
refit). Everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

from flowline.katib import ITERATIONS_METRIC
from flowline.use_case import FAMILIES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flowline.katib_experiments.trial", description=__doc__.split("\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--use-case", help="a built-in use case name, or a use-case YAML file")
    which.add_argument("--use-case-json", help="the use case as JSON")
    parser.add_argument("--family", required=True, choices=FAMILIES)
    parser.add_argument("--source", default="", help="read the data from this path or URL instead of the use case's")
    parser.add_argument("--feature-plan", help="the FeatureSet plan as JSON (default: search one)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    from flowline.features.engineering import engineer_features
    from flowline.features.feature_set import FeatureSet
    from flowline.features.plan import FeaturePlan
    from flowline.models.families import objective_metric, reported_value, trial_score
    from flowline.prepare import prepare
    from flowline.search_space import search_space
    from flowline.tuning import search_data
    from flowline.use_case import UseCase
    from flowline.use_case_loader import load_use_case

    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    use_case = UseCase.model_validate_json(args.use_case_json) if args.use_case_json else load_use_case(args.use_case)
    space = search_space(args.family, use_case.task, use_case.tuning)
    for parameter in space.parameters:
        parser.add_argument(f"--{parameter.name}", required=True)
    args = parser.parse_args(argv)
    params = space.parse({p.name: getattr(args, p.name) for p in space.parameters})

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    prepared = prepare(use_case, args.source)
    use_case, parts = prepared.use_case, prepared.parts
    # Fit the plan on all of train, as the features step does; search on the sample, as the Optuna backend does.
    if args.feature_plan:
        feature_set = FeatureSet.fit(parts["train"], use_case, FeaturePlan.from_dict(json.loads(args.feature_plan)))
    else:
        feature_set, _ = engineer_features(parts["train"], parts["valid"], use_case, progress=log, timed=False)
    data = search_data(use_case, feature_set, parts["train"], parts["valid"])
    metric, _ = objective_metric(use_case.task, use_case.tuning.metric)

    def report(step: int, score: float) -> None:
        print(f"{metric}={reported_value(use_case.task, score):.6f}", flush=True)

    log(f"trial: {args.family} {params} on {len(data.y_train)} train and {len(data.y_valid)} valid rows")
    score, iterations = trial_score(args.family, params, data, use_case.tuning, report)
    print(f"{metric}={reported_value(use_case.task, score):.6f}")
    print(f"{ITERATIONS_METRIC}={iterations}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
