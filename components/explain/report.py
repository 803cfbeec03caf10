"""The explain step's HTML report: importance, dependence and local plots, embedded as PNG."""

from __future__ import annotations

import numpy as np

from flowline import reports
from flowline.use_case import UseCase

SHOWN_COLUMNS = 15  # columns in the importance chart
LOCAL_SHOWN = 8  # columns per local explanation chart


def _dependence_chart(column: str, points: dict, units: str) -> str:
    values, shap_values = points["values"], np.array(points["shap"])
    figure, axis = reports.subplots(figsize=(6, 3.5))
    numeric = all(isinstance(v, (int, float)) or v is None for v in values)
    if numeric:
        axis.scatter([np.nan if v is None else v for v in values], shap_values, s=8, alpha=0.5)
    else:
        categories = sorted({str(v) for v in values})
        positions = np.array([categories.index(str(v)) for v in values], dtype=float)
        jitter = np.random.default_rng(0).uniform(-0.2, 0.2, len(positions))
        axis.scatter(positions + jitter, shap_values, s=8, alpha=0.5)
        axis.set_xticks(range(len(categories)), categories, rotation=30, ha="right")
    axis.axhline(0, color="#888888", linewidth=0.8)
    axis.set_xlabel(column)
    axis.set_ylabel(f"SHAP value ({units})")
    return reports.figure_image(figure, f"dependence of the SHAP value on {column}")


def _local_chart(instance: dict, units: str) -> str:
    columns = list(instance["shap"])[:LOCAL_SHOWN][::-1]
    figure, (left, right) = reports.subplots(1, 2, figsize=(10, 0.3 * len(columns) + 1.2), sharey=True)
    left.barh(columns, [instance["shap"][c] for c in columns], color="#1f77b4")
    left.set_title(f"SHAP ({units})")
    right.barh(columns, [instance["lime"][c] for c in columns], color="#ff7f0e")
    right.set_title("LIME weight")
    for axis in (left, right):
        axis.axvline(0, color="#888888", linewidth=0.8)
    return reports.figure_image(figure, f"local explanation of test row {instance['row']}: SHAP and LIME")


def explanation_html(explanation: dict, use_case: UseCase) -> str:
    agreement = explanation["agreement"]
    units = explanation["units"]
    sections = [
        f"<p>SHAP values in {reports.escape(units)} over {explanation['rows_explained']} test rows; they add up to "
        f"the model's output (largest error {explanation['additivity_max_error']:.2e}).</p>",
        "<h2>Global importance</h2>",
        reports.importance_chart(dict(list(explanation["global_importance"].items())[:SHOWN_COLUMNS]), units),
        reports.table(["column", "mean |SHAP|"], list(explanation["global_importance"].items())[:SHOWN_COLUMNS]),
        "<h2>Dependence of the top columns</h2>",
        *(_dependence_chart(column, points, units) for column, points in explanation["dependence"].items()),
        "<h2>Local explanations: SHAP and LIME</h2>",
        f"<p>Agreement over each instance's top {agreement['top_columns']} columns of either method: mean Spearman "
        f"rank correlation {agreement['mean_spearman']:.2f}; the same top column in "
        f"{agreement['top_column_agreement']:.0%} of the instances.</p>",
        reports.table(["test row", "score", "top column (SHAP)", "top column (LIME)", "Spearman"],
                      [[e["row"], e["score"], next(iter(e["shap"])), next(iter(e["lime"])), e["spearman"]]
                       for e in explanation["local"]]),
    ]
    for instance in explanation["local"]:
        sections += [f"<h3>Test row {reports.escape(instance['row'])}: score {instance['score']:.4f}</h3>",
                     _local_chart(instance, units)]
    return reports.page(f"Explanations: {use_case.name}", sections)
