"""AutoGluon-Tabular on flowline's split: run inside its own venv by models_bench.py (no flowline imports).

    python autogluon_baseline.py FIT_CSV TEST_CSV --label COLUMN --time-limit 120 --metric roc_auc|ap --out FILE

FIT_CSV holds train + valid, TEST_CSV the test split. AutoGluon fits with `presets` (best_quality by
default: bagged and stacked LightGBM, CatBoost, XGBoost, random forests, ...; no neural networks
without torch) within `time_limit` seconds of its own, then scores the test rows once.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import pandas as pd
from autogluon.tabular import TabularPredictor

from baseline_scores import positional_names, scores_report, write_result

AUTOGLUON_METRIC = {"roc_auc": "roc_auc", "ap": "average_precision"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("fit")
    parser.add_argument("test")
    parser.add_argument("--label", required=True)
    parser.add_argument("--time-limit", type=int, required=True)
    parser.add_argument("--metric", default="roc_auc", choices=sorted(AUTOGLUON_METRIC))
    parser.add_argument("--presets", default="best_quality")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    fit, test = positional_names(pd.read_csv(args.fit), pd.read_csv(args.test), args.label)
    y_test = test.pop(args.label).astype(int)
    with tempfile.TemporaryDirectory() as folder:
        started = time.monotonic()
        predictor = TabularPredictor(label=args.label, eval_metric=AUTOGLUON_METRIC[args.metric], path=folder,
                                     verbosity=0).fit(fit, time_limit=args.time_limit, presets=args.presets)
        wall = time.monotonic() - started
        if str(predictor.positive_class) != "1":
            raise SystemExit(f"AutoGluon took {predictor.positive_class!r} as the positive class, not 1")
        scores = predictor.predict_proba(test)[predictor.positive_class].to_numpy()
        best = predictor.model_best
    write_result(args.out, {**scores_report(y_test, scores), "wall_seconds": wall, "best_model": best,
                            "presets": args.presets, "time_limit": args.time_limit, "fit_rows": len(fit),
                            "test_rows": len(y_test)})


if __name__ == "__main__":
    main()
