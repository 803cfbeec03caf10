"""FLAML on flowline's split: run inside its own venv by automl_bench.py and models_bench.py (no flowline imports).

    python flaml_baseline.py FIT_CSV TEST_CSV --label COLUMN --time-budget 300 --metric roc_auc|ap --out FILE

FIT_CSV holds train + valid (80 % of the rows), TEST_CSV the test split, both typed as
flowline's ingest typed them; FLAML searches with its own holdout inside the fit rows,
then its best model scores the test rows once.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
from flaml import AutoML

from baseline_scores import positional_names, scores_report, write_result


def frame(table: pd.DataFrame, label: str) -> tuple[pd.DataFrame, pd.Series]:
    y = table.pop(label).astype(int)
    for column in table.columns:
        if table[column].dtype == object:
            table[column] = table[column].astype("category")
    return table, y


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("fit")
    parser.add_argument("test")
    parser.add_argument("--label", required=True)
    parser.add_argument("--time-budget", type=int, default=300)
    parser.add_argument("--metric", default="roc_auc")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    fit, test = positional_names(pd.read_csv(args.fit), pd.read_csv(args.test), args.label)
    x_fit, y_fit = frame(fit, args.label)
    x_test, y_test = frame(test, args.label)
    for column in x_test.columns:  # the same categories on both sides
        if isinstance(x_fit[column].dtype, pd.CategoricalDtype):
            x_test[column] = pd.Categorical(x_test[column], categories=x_fit[column].cat.categories)
    automl = AutoML()
    started = time.monotonic()
    automl.fit(x_fit, y_fit, task="classification", metric=args.metric, time_budget=args.time_budget,
               seed=args.seed, verbose=0)
    wall = time.monotonic() - started
    scores = automl.predict_proba(x_test)[:, 1]
    write_result(args.out, {**scores_report(y_test, scores), "wall_seconds": wall,
                            "best_estimator": automl.best_estimator, "time_budget": args.time_budget,
                            "fit_rows": len(y_fit), "test_rows": len(y_test)})


if __name__ == "__main__":
    main()
