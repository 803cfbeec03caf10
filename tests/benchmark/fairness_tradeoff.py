"""The fairness mitigation's trade-off on card fraud, which has no sensitive attribute: a synthetic one.

    python tests/benchmark/fairness_tradeoff.py --work DIR --out FILE [--driver Amount] [--trials 5]

Each transaction of the card sample gets a `segment`, A or B, drawn (seed 42) with
P(B) = 0.8 when its `--driver` column is above the median and 0.2 otherwise: the
segments differ in that column and, through it, in how the model scores them, as a
customer attribute that the data does not name could (Amount: transaction size; V14,
the strongest fraud signal: most frauds fall in segment A, so parity has a price). The fraud use case then gates
`segment` (equalized odds difference <= 0.10, disparate impact ratio >= 0.8) with the
default mitigation (equalized odds, deterministic per-group thresholds,
max_cost_increase 10 %), and runs ingest -> split -> features -> tune (xgboost and
linear, `--trials` each) -> train -> evaluate -> bias with the plain step functions.
Writes the bias step's side-by-side summary (flowline/fairness_summary.py) as JSON and
prints the terminal lines.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from flowline.components.bias.fairness import bias_files
from flowline.fairness_summary import fairness_summary
from flowline.components.evaluate.evaluation import evaluate_files
from flowline.components.features.fitting import engineer_features_files
from flowline.components.ingest.ingestion import ingest_to_files
from flowline.contract import read_table, resolve_source
from flowline.components.split.parts import split_files
from flowline.components.train.training import train_files
from flowline.tuning import tune_files
from flowline.use_case_loader import load_use_case, parse_use_case

FAMILIES = ("xgboost", "linear")


def card_with_segment(work: Path, driver: str, trials: int):
    """The fraud use case over a copy of its data with the synthetic `segment` column, as a sensitive attribute."""
    fraud = load_use_case("fraud")
    frame = read_table(resolve_source(fraud)).frame
    rng = np.random.default_rng(42)
    large = pd.to_numeric(frame[driver]) > pd.to_numeric(frame[driver]).median()
    frame["segment"] = np.where(rng.random(len(frame)) < np.where(large, 0.8, 0.2), "B", "A")
    data = work / "card_with_segment.csv"
    frame.to_csv(data, index=False)
    document = fraud.model_dump(mode="json")
    document.update(
        name="fraud-segment", data={"path": str(data)}, sensitive_attributes=["segment"],
        columns={**document["columns"], "segment": {"type": "category", "allowed": ["A", "B"]}},
        fairness={"gates": {"equalized_odds_difference": {"max": 0.10}, "disparate_impact_ratio": {"min": 0.8}},
                  "mitigation": {"enabled": True, "constraint": "equalized_odds"}},
        tuning={**document["tuning"], "families": {family: trials for family in FAMILIES}})
    return parse_use_case(document)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--driver", default="Amount", help="the column the segment follows")
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    use_case = card_with_segment(args.work, args.driver, args.trials)
    f = {name: str(args.work / name) for name in ("data", "quarantine", "profile.md", "train", "valid", "test",
                                                   "fs.json", "features.md", "model", "holdout", "eval.json",
                                                   "decided.json", *(f"{family}.json" for family in FAMILIES))}
    ingest_to_files(use_case, "", f["data"], f["quarantine"], f["profile.md"])
    split_files(use_case, f["data"], {k: f[k] for k in ("train", "valid", "test")})
    engineer_features_files(use_case, f["train"], f["valid"], f["fs.json"], f["features.md"])
    searches = {family: f[f"{family}.json"] for family in FAMILIES}
    for family, result in searches.items():
        tune_files(use_case, family, args.trials, "optuna", f["train"], f["valid"], f["fs.json"], result)
    train_files(use_case, f["train"], f["valid"], f["fs.json"], searches, f["model"], f["holdout"])
    evaluate_files(use_case, f["model"], f["fs.json"], f["holdout"], f["test"], f["eval.json"])
    decided = bias_files(use_case, f["model"], f["fs.json"], f["holdout"], f["test"], f["eval.json"],
                         f["decided.json"])
    args.out.write_text(json.dumps(fairness_summary(decided["fairness"]), indent=1))


if __name__ == "__main__":
    main()
