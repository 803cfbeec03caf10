"""The features step's work: search a feature plan and fit the FeatureSet on the training split
(flowline/features/engineering.py), and write it with the search log."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from flowline.features.engineering import SearchLog, engineer_features
from flowline.features.feature_set import FeatureSet
from flowline.use_case import UseCase


def engineer_features_files(use_case: UseCase, train_file: str, valid_file: str, feature_set_file: str,
                            report_file: str, timed: bool = True) -> tuple[FeatureSet, SearchLog]:
    """Choose and fit the FeatureSet from the split files; save it as JSON and the search as Markdown. Returns
    the FeatureSet and the search's log. `timed`: as engineer_features takes it."""
    train, valid = pd.read_parquet(train_file), pd.read_parquet(valid_file)
    feature_set, log = engineer_features(train, valid, use_case, timed=timed)
    if feature_set.entity_features:
        # An entity's history is every event known at training, valid's too (no label in it): the model server's
        # store starts from it, and a test row then sees its entity's earlier events as a served row does.
        feature_set = feature_set.with_history(pd.concat([train, valid]))
    feature_set.save(feature_set_file)
    encodings = sorted(set(feature_set.plan.encodings.values()))
    chosen = (f"**Chosen:** {len(feature_set.input_columns)} columns -> {feature_set.width} features. Encodings: "
              + ", ".join(f"{e} ({sorted(c for c, v in feature_set.plan.encodings.items() if v == e)})" for e in encodings)
              + f". Transforms: {feature_set.plan.transforms or 'none'}. "
              f"Generated: {feature_set.generated_names or 'none'}.")
    details = f"No search: {log.off}." if log.off else log.markdown()
    Path(report_file).write_text(f"### Feature engineering: {use_case.name}\n\n{chosen}\n\n{details}\n")
    searched = (f", search {len(log.tried)} candidates on {log.rows[0]:,} of {len(train):,} "
                f"train rows in {log.seconds:.1f} s: proxy score "
                f"{log.start_score:.4f} -> {log.score:.4f}") if not log.off else ""
    print(f"features: {len(feature_set.input_columns)} columns -> {feature_set.width} features "
          f"(FeatureSet {feature_set.version}){searched}")
    return feature_set, log
