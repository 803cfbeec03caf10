"""The model bench's use cases and report (tests/benchmark/models_bench.py). The bench itself runs in
`make bench-models`."""

import json

import pytest
import yaml

import models_bench

from flowline.contract import apply_contract, read_use_case_table
from flowline.use_case_loader import load_use_case


def _result(dataset, seed, flowline, flaml, autogluon, metric="roc_auc"):
    return {"dataset": dataset, "seed": seed, "metric": metric,
            **{system: {metric: score, "wall_seconds": wall} for system, score, wall in
               (("flowline", flowline, 100.0), ("flaml", flaml, 101.0), ("autogluon", autogluon, 104.0))}}


def test_the_report_pairs_flowline_with_the_better_baseline_per_seed_and_ranks_every_pair():
    results = [_result("a", 0, 0.80, 0.78, 0.79), _result("a", 1, 0.82, 0.83, 0.81),
               _result("b", 0, 0.50, 0.60, 0.55, "auprc"), _result("b", 1, 0.70, 0.70, 0.60, "auprc")]
    summary = models_bench.report(results)
    a, b = summary["datasets"]["a"], summary["datasets"]["b"]
    assert a["metric"] == "roc_auc" and b["metric"] == "auprc"
    assert a["flowline"]["mean"] == pytest.approx(0.81) and a["flowline"]["se"] == pytest.approx(0.01)
    # per seed: 0.80 - 0.79 and 0.82 - 0.83
    assert a["flowline_minus_best_other"]["mean"] == pytest.approx(0.0)
    assert a["flowline_minus_best_other"]["se"] == pytest.approx(0.01)
    assert b["flowline_minus_best_other"]["mean"] == pytest.approx(-0.05)
    # two seeds: t(0.975, 1 degree of freedom) = 12.706 standard errors each side
    assert a["flowline_minus_best_other"]["ci95"] == pytest.approx([-0.12706, 0.12706], abs=1e-5)
    assert a["flowline_minus_best_other"]["seeds_level_or_ahead"] == 1
    assert b["flowline_minus_best_other"]["seeds_level_or_ahead"] == 1  # level on seed 1 (0.70 and 0.70)
    assert a["wall_seconds"] == {"flowline": 100.0, "flaml": 101.0, "autogluon": 104.0}
    # ranks: a0 1/3/2, a1 2/1/3, b0 3/1/2, b1 tie 1.5/1.5/3
    assert summary["mean_rank"] == {"flowline": pytest.approx(7.5 / 4), "flaml": pytest.approx(6.5 / 4),
                                    "autogluon": pytest.approx(10 / 4)}
    table = models_bench.markdown(summary).splitlines()
    assert table[2].startswith("| a | roc_auc | 2 | 0.8100 ± 0.0100 |") and table[2].endswith("| 100 / 101 / 104 |")
    assert "| +0.0000 ± 0.0100 (-0.1271 to +0.1271; 1 of 2) |" in table[2]
    assert "flowline 1.88, flaml 1.62, autogluon 2.50" in table[-1]


def test_public_sets_run_from_what_flowline_init_drafts_seeded_and_without_a_leaking_column(data_home, tmp_path):
    path = models_bench.use_case_yaml("bank_marketing", tmp_path)
    document = yaml.safe_load(path.read_text())
    assert "duration" not in document["columns"] and document["undeclared"] == "ignore"
    use_case = load_use_case(str(models_bench.seeded(path, 3, tmp_path)))
    assert use_case.split.seed == 3 and use_case.tuning.seed == 3 and use_case.label.positive == "yes"
    result = apply_contract(read_use_case_table(use_case).frame, use_case)
    assert len(result.kept) == 41188 and "duration" not in use_case.feature_columns
    shipped = load_use_case(str(models_bench.seeded(models_bench.use_case_yaml("fraud-claims", tmp_path), 1, tmp_path)))
    assert shipped.model_copy(update={"split": shipped.split.model_copy(update={"seed": 42}),
                                      "tuning": shipped.tuning.model_copy(update={"seed": 42})}) == \
        load_use_case("fraud-claims")


def test_seed_42_is_refused_as_the_reporting_split(monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["models_bench", "--flaml-venv", "x", "--autogluon-venv", "y",
                                     "--seeds", "0", "42", "--out", "o.json"])
    with pytest.raises(SystemExit):
        models_bench.main()
    assert "seed 42 is the reporting split" in capsys.readouterr().err


def test_report_only_reports_what_was_measured_and_measures_nothing(monkeypatch, tmp_path, capsys):
    out = tmp_path / "models.json"
    (tmp_path / "models" / "results").mkdir(parents=True)
    (tmp_path / "models" / "results" / "churn-seed1.json").write_text(
        json.dumps(_result("churn", 1, 0.85, 0.84, 0.86)))
    monkeypatch.setattr("sys.argv", ["models_bench", "--flaml-venv", "x", "--autogluon-venv", "y", "--report-only",
                                     "--datasets", "churn", "adult", "--out", str(out)])
    models_bench.main()
    summary = json.loads(out.read_text())
    assert summary["pairs"] == 1 and list(summary["datasets"]) == ["churn"]
    assert summary["mean_rank"] == {"flowline": 2.0, "flaml": 3.0, "autogluon": 1.0}
    assert out.with_suffix(".md").read_text().startswith("| dataset | metric | seeds |")
