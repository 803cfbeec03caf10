"""The model card every package carries, as JSON (for tools) and HTML (for people).

It says what the model is for, what data it came from (with hashes), how well it
does (test metrics with 95 % intervals), how it treats the sensitive groups, what
drives it, where it falls short, and which gates it passed. Everything comes from the
package's own files, so the card cannot disagree with the model it describes, except
the drift detector's library and licence, read from the installed distribution that
fitted it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from importlib import metadata

from flowline import reports
from flowline.card_lines import FAIRNESS_ROWS, code_line, environment_text, quality_rows, search_text
from flowline.components.package.plots import performance_plots
from flowline.fairness_summary import (GATE_HEADERS, OUTCOME_HEADERS, fairness_summary, gate_rows, group_chart,
                                       groups_on_test, outcome_rows, threshold_rows)
from flowline.package.format import REPORT_FILES, REPORTS_DIR
from flowline.use_case import FAIRNESS_METRICS, UseCase, gate_bounds

FORMAT = "flowline.model_card/v1"
CARD_TOP_COLUMNS = 10
DRIFT_LIBRARY = "alibi-detect"
BUSINESS_SOURCE = "Business Source License"


def drift_detector_licence() -> dict:
    """The drift detector's library, version and licence as installed, and what the licence means for users."""
    installed = metadata.metadata(DRIFT_LIBRARY)
    licence = installed["License"] or installed["License-Expression"] or "unknown"  # PEP 639 moved it
    if licence.startswith(BUSINESS_SOURCE):
        note = (f"{DRIFT_LIBRARY} {installed['Version']} is under the {licence}: production use of the drift "
                "detector needs a commercial licence from Seldon. The detector sits behind flowline's drift "
                "interface (flowline/drift.py) and can be replaced.")
    else:
        note = f"{DRIFT_LIBRARY} {installed['Version']} is under the {licence}."
    return {"library": DRIFT_LIBRARY, "version": installed["Version"], "licence": licence, "note": note}


def _generated_limitations(use_case: UseCase, evaluation: dict, explanation: dict) -> list[str]:
    """Limits that follow from the run itself, added to the use case's own."""
    found = [f"Measured on {reports.number(evaluation['test_rows'])} test rows drawn from the same source as the "
             f"training rows (split {use_case.split.method}, seed {use_case.split.seed}); behaviour on other "
             "populations or later periods is not measured here."]
    fairness = evaluation.get("fairness", {})
    if use_case.task == "binary" and use_case.sensitive_attributes:
        found.append(f"Fairness is measured only for {', '.join(use_case.sensitive_attributes)}; other groups are "
                     "not checked.")
    elif use_case.task == "binary":
        found.append("No sensitive attributes are declared, so fairness is not measured for any group.")
    for attribute, result in fairness.get("attributes", {}).items():
        small = [group for group in result["by_group"] if group not in result["compared_groups"]]
        if small:
            found.append(f"{attribute}: groups {', '.join(small)} have fewer than {use_case.fairness.min_group_rows} "
                         "out-of-fold rows (train + valid, where fairness is judged) and are reported but not "
                         "compared.")
    mitigation = fairness.get("mitigation")
    if mitigation:
        drawn = ("drawn at random per row (fixed by a hash of the row), so two rows with the same score can get "
                 "different decisions" if mitigation["randomized"] else "one per group")
        found.append(f"Decisions use per-group thresholds, {drawn}; requests must carry "
                     + ", ".join(mitigation["attributes"]) + ".")
    agreement = explanation["agreement"]
    if agreement["mean_spearman"] < 0.5:
        found.append(f"LIME and SHAP agree weakly on these instances (mean Spearman "
                     f"{reports.number(agreement['mean_spearman'])}): "
                     "read single explanations with care.")
    return found


def model_card(use_case: UseCase, evaluation: dict, explanation: dict, lineage: dict, model: dict,
               reports_held: tuple[str, ...] = ()) -> dict:
    """The card's content; `model` is the served ensemble's description (family, weights); `reports_held`
    names the REPORT_FILES the package holds beside the card."""
    intervals = evaluation.get("confidence_intervals", {})
    fairness = evaluation.get("fairness", {})
    decision = evaluation["champion_challenger"]
    return {
        "format": FORMAT,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "code": lineage["code"],
        "environment": lineage.get("environment"),
        "run": lineage["run"],
        "search": search_text(use_case, lineage["run"]),
        "model": {"use_case": use_case.name, "task": use_case.task, "description": use_case.description,
                  **model},
        "intended_use": use_case.intended_use or use_case.description,
        "data": {**lineage["dataset"], "feature_set_version": lineage["feature_set"]["version"],
                 "model_files_sha256": lineage["model"]["files"],
                 "split": use_case.split.model_dump(), "split_text": split_text(use_case),
                 "label": use_case.label.column,
                 **({"label_text": clv_label_text(use_case)} if use_case.transaction_log else {}),
                 **({"test_rows": test_rows_text(evaluation)} if use_case.task == "binary" else {}),
                 "sensitive_attributes": use_case.sensitive_attributes},
        "metrics": {name: {"value": value, "ci95": intervals.get(name)} for name, value in evaluation["metrics"].items()},
        "threshold": evaluation.get("threshold"),
        "curves": ({key: evaluation[key] for key in ("roc", "precision_recall", "calibration")}
                   if use_case.task == "binary" else {"deciles": evaluation["deciles"]["table"]}),
        "fairness": {
            "attributes": {attribute: {**{m: result[m] for m in FAIRNESS_METRICS}, "gate": result["gate"]}
                           for attribute, result in fairness.get("attributes", {}).items()},
            "mitigation": fairness_summary(fairness),
            "groups_on_test": groups_on_test(fairness) if fairness.get("attributes") else {},
        },
        "explanation": {"units": explanation["units"], "rows_explained": explanation["rows_explained"],
                        "top_columns": dict(list(explanation["global_importance"].items())[:CARD_TOP_COLUMNS]),
                        "lime_shap_agreement": explanation["agreement"]},
        "limitations": [*use_case.limitations, *_generated_limitations(use_case, evaluation, explanation)],
        "gates": {"quality": evaluation["gates"],
                  "fairness": {attribute: result["gates"] for attribute, result in fairness.get("attributes", {}).items()},
                  "passed": evaluation["gates_passed"]},
        "decision": {"decision": decision["decision"], "reason": decision["reason"]},
        "drift_detector": drift_detector_licence(),
        "reports": {name: f"{REPORTS_DIR}/{REPORT_FILES[name]}" for name in reports_held},
    }


def _threshold_sentence(card: dict) -> str:
    mitigation = card["fairness"]["mitigation"]
    served = ("; the served decisions use per-group thresholds instead (see Fairness)"
              if mitigation and mitigation["applied"] else "")
    return (f"<p>Decision threshold: {reports.number(card['threshold'])}, the one with the lowest business cost on "
            f"out-of-fold predictions. The test metrics above are measured at this threshold{served}.</p>")


def _fairness_sections(fairness: dict) -> list[str]:
    mitigation = fairness["mitigation"]
    if not mitigation:
        return ["<p>No sensitive attributes are declared for this use case, so fairness is not measured.</p>"]
    rows = mitigation["decided_on"]
    sections = [f"<p>Gates and mitigation decided on {reports.number(rows['out_of_fold_rows'])} out-of-fold "
                f"predictions of train + valid; the {reports.number(rows['test_rows'])} test rows only report. "
                f"Mitigation {reports.escape(mitigation['reason'])}.</p>",
                reports.table(GATE_HEADERS, gate_rows(mitigation)),
                reports.table(OUTCOME_HEADERS, outcome_rows(mitigation)),
                reports.table(["group", "served threshold"], threshold_rows(mitigation))]
    for attribute, options in fairness["groups_on_test"].items():
        sections += [f"<h3>{reports.escape(attribute)}: decisions by group (test)</h3>",
                     group_chart(attribute, options["single_threshold"], options["mitigated"])]
    return sections


def test_rows_text(evaluation: dict) -> str:
    """The test rows and their class balance (a binary task's), which the card stated nowhere."""
    (tn, fp), (fn, tp) = evaluation["confusion_matrix"]
    rows, positives = tn + fp + fn + tp, fn + tp
    negative, positive = evaluation["classes"]
    return f"{rows:,}: {positives:,} {positive!r} ({positives / rows:.1%}), {rows - positives:,} {negative!r}"


def split_text(use_case: UseCase) -> str:
    """How the rows were split, in words: `latest` has no test share (its test rows are every entity at the
    latest time; the card had said "test 0.2" for CLV's 23,570 test customers)."""
    split = use_case.split
    if split.method == "latest":
        return (f"latest: test = every row at the latest {use_case.time_column}; valid = the earlier rows of "
                f"{split.valid_size:g} of the {(use_case.id_columns or ['row'])[0]} values, seed {split.seed}")
    kind = "the latest rows" if split.method == "time" else "seeded"
    return f"{split.method}: test {split.test_size:g} ({kind}), valid {split.valid_size:g}, seed {split.seed}"


def clv_label_text(use_case: UseCase) -> str:
    """What a customer-rows model's label, and so its prediction, is."""
    spec = use_case.transaction_log.transactions
    return (f"the net {spec.amount_column} a customer spends over the {spec.horizon_days} days after a cut-off, "
            f"floored at 0. The model is applied at calibration_end {spec.calibration_end} and learned from rows at "
            f"{', '.join(map(str, spec.training_cutoffs))}, each labelled with the spend from its cut-off to "
            f"calibration_end scaled to {spec.horizon_days} days. A prediction is the expected spend (a mean: many "
            f"customers spend nothing), in the units of {spec.amount_column}")


def model_card_html(card: dict, package_version: str | None = None) -> str:
    """The card as a page: tables, and plots as embedded PNG; every number as `reports.number` writes it.
    In the package (no `package_version`) the reports are listed as links to their files beside it. Shown alone (the
    dashboard's copy) the card names the `package_version` it belongs to, which the card inside cannot (the version
    hashes it), and names the reports, where links would lead nowhere."""
    model, data = card["model"], card["data"]
    members = reports.members(model.get("members", []))
    interval = (lambda ci: "" if ci is None else f"{reports.number(ci[0])} to {reports.number(ci[1])}")
    rows_in = " / ".join(reports.number(data[key]) for key in ("rows_in", "rows_kept", "rows_quarantined"))
    sections = [
        f"<p>{reports.escape(reports.stated(model['description'], 'description'))}</p>",
        "<h2>Intended use</h2>", f"<p>{reports.escape(reports.stated(card['intended_use'], 'intended_use'))}</p>",
        "<h2>Model</h2>",
        reports.table(["field", "value"], [["task", model["task"]], ["members", members],
                                           ["code", code_line(card["code"])],
                                           *([["package version", package_version]] if package_version else []),
                                           ["run", card["run"].get("name") or "not known"],
                                           ["search", card.get("search") or "not recorded"],
                                           ["environment", environment_text(card.get("environment"))],
                                           ["card written", card["created_at"]]]),
        "<h2>Data</h2>",
        reports.table(["field", "value"], [
            ["source", data["source"]], ["source sha256", data["source_sha256"]],
            ["rows in / kept / quarantined", rows_in],
            ["split", data["split_text"]],
            *([["test rows", data["test_rows"]]] if data.get("test_rows") else []),
            ["columns not declared (not used)", ", ".join(data.get("undeclared_columns", [])) or "none"],
            ["label", f"{data['label']}: {data['label_text']}" if data.get("label_text") else data["label"]],
            ["feature set version", data["feature_set_version"]],
            *[[f"model file {name}", digest] for name, digest in data["model_files_sha256"].items()]]),
        "<h2>Metrics on the test rows</h2>",
        reports.table(["metric", "value", "95 % interval"],
                      [[name, m["value"], interval(m["ci95"])] for name, m in card["metrics"].items()]),
    ]
    if card["threshold"] is not None:
        sections.append(_threshold_sentence(card))
    sections += [performance_plots(card["curves"]), "<h2>Fairness</h2>", *_fairness_sections(card["fairness"])]
    explanation = card["explanation"]
    agreement = explanation["lime_shap_agreement"]
    sections += [
        "<h2>What drives the model</h2>",
        f"<p>Mean |SHAP value| ({reports.escape(explanation['units'])}) over "
        f"{reports.number(explanation['rows_explained'])} test rows. LIME and SHAP on sample instances: mean "
        f"Spearman {reports.number(agreement['mean_spearman'])}, same top column in "
        f"{agreement['top_column_agreement']:.0%} of them.</p>",
        reports.importance_chart(explanation["top_columns"], explanation["units"]),
        reports.table(["column", "mean |SHAP|"], list(explanation["top_columns"].items())),
        "<h2>Limitations</h2>",
        "<ul>" + "".join(f"<li>{reports.escape(item)}</li>" for item in card["limitations"]) + "</ul>",
        "<h2>Gates and decision</h2>",
        reports.table(["gate", "judged on", "value", "bounds", "decision"],
                      [[name, quality_rows(g), g["value"], gate_bounds(g), "pass" if g["passed"] else "FAIL"]
                       for name, g in card["gates"]["quality"].items()]
                      + [[f"{attribute}: {name}", FAIRNESS_ROWS, g["value"], gate_bounds(g),
                          "pass" if g["passed"] else "FAIL"]
                         for attribute, gates in card["gates"]["fairness"].items() for name, g in gates.items()]),
        f"<p><strong>{reports.escape(card['decision']['decision'])}</strong>: "
        f"{reports.escape(card['decision']['reason'])}</p>",
        "<h2>Drift detector licence</h2>", f"<p>{reports.escape(card['drift_detector']['note'])}</p>",
    ]
    if card["reports"]:
        linked = package_version is None
        listed = [f'<a href="{reports.escape(path)}">{reports.escape(path)}</a>' if linked else
                  f"<code>{reports.escape(path)}</code>" for path in card["reports"].values()]
        where = "beside the card" if linked else "in the package (this step's model_package output)"
        sections += ["<h2>Reports</h2>", f"<p>The run's other reports, {where}:</p>",
                     "<ul>" + "".join(f"<li>{item}</li>" for item in listed) + "</ul>"]
    return reports.page(f"Model card: {model['use_case']}", sections)
