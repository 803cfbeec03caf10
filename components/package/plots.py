"""The model card's performance plots, from what the evaluate step stored: ROC and precision-recall
curves and calibration for a binary model, mean predicted against mean actual value by decile of
prediction for a regression model. Each is an embedded PNG (flowline/reports.py)."""

from __future__ import annotations

from flowline import reports

SIZE = (4.2, 3.6)


def _diagonal(axis) -> None:
    axis.plot([0, 1], [0, 1], linestyle="--", color="#888888", linewidth=0.8)
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)


def roc_plot(roc: dict) -> str:
    figure, axis = reports.subplots(figsize=SIZE)
    axis.plot(roc["fpr"], roc["tpr"], color="#1f77b4")
    _diagonal(axis)
    axis.set_xlabel("false positive rate")
    axis.set_ylabel("true positive rate")
    axis.set_title("ROC curve (test)")
    return reports.figure_image(figure, "ROC curve on the test rows")


def precision_recall_plot(curve: dict) -> str:
    figure, axis = reports.subplots(figsize=SIZE)
    axis.plot(curve["recall"], curve["precision"], color="#1f77b4")
    axis.axhline(curve["precision"][0], linestyle="--", color="#888888", linewidth=0.8)  # everyone flagged
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)
    axis.set_xlabel("recall")
    axis.set_ylabel("precision")
    axis.set_title("Precision-recall curve (test)")
    return reports.figure_image(figure, "precision-recall curve on the test rows")


def calibration_plot(bins: list[dict]) -> str:
    figure, axis = reports.subplots(figsize=SIZE)
    axis.plot([b["mean_predicted"] for b in bins], [b["observed_rate"] for b in bins], marker="o", color="#1f77b4")
    _diagonal(axis)
    axis.set_xlabel("mean predicted probability")
    axis.set_ylabel("observed positive rate")
    axis.set_title("Calibration (test, 10 bins)")
    return reports.figure_image(figure, "calibration: observed positive rate by bin of predicted probability")


def deciles_plot(table: list[dict]) -> str:
    figure, axis = reports.subplots(figsize=(6, 3.6))
    deciles = [row["decile"] for row in table]
    axis.bar([d - 0.2 for d in deciles], [row["mean_predicted"] for row in table], 0.4, label="mean predicted",
             color="#bbbbbb")
    axis.bar([d + 0.2 for d in deciles], [row["mean_actual"] for row in table], 0.4, label="mean actual",
             color="#1f77b4")
    axis.set_xticks(deciles)
    axis.set_xlabel("decile of prediction (10: the highest)")
    axis.set_ylabel("value")
    axis.set_title("Predicted and actual value by decile (test)")
    axis.legend(loc="upper left", fontsize=8)
    return reports.figure_image(figure, "mean predicted and actual value by decile of prediction on the test rows")


def performance_plots(curves: dict) -> str:
    """The card's plots for its task: `curves` holds roc, precision_recall and calibration, or deciles."""
    if "deciles" in curves:
        return deciles_plot(curves["deciles"])
    return "".join([roc_plot(curves["roc"]), precision_recall_plot(curves["precision_recall"]),
                    calibration_plot(curves["calibration"])])
