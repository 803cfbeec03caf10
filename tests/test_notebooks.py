"""The notebooks: committed clean (no outputs, valid nbformat, documented) and executed with nbclient.
03-ab-analysis needs the serving packages: tests/serving/test_ab_notebook.py runs it."""

import html
import json
import re

import nbformat
import pytest
from stand_in_api import StandInApiServer, kfp_api

from notebook_runs import NOTEBOOKS, executed, outputs_of
from pipeline_steps import STEPS

NAMES = sorted(path.name for path in NOTEBOOKS.glob("*.ipynb"))


def test_the_notebooks_are_there_and_documented():
    assert NAMES == ["01-quickstart.ipynb", "02-submit-to-kubeflow.ipynb", "03-ab-analysis.ipynb",
                     "04-your-own-data.ipynb"]
    readme = (NOTEBOOKS / "README.md").read_text()
    for name in NAMES:
        assert name.removesuffix(".ipynb") in readme, name


@pytest.mark.parametrize("name", NAMES)
def test_a_notebook_is_committed_without_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: a cell has outputs"


@pytest.mark.pipeline
def test_the_quickstart_runs_churn_serves_it_and_calls_it(data_home, tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWLINE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("FLOWLINE_QUICKSTART_TRIALS", "1")
    shown = outputs_of(executed("01-quickstart.ipynb", tmp_path))
    assert "all gates passed" in shown, shown[-3000:]
    v2 = json.loads(re.search(r"^v2: (.*)$", shown, re.MULTILINE).group(1))
    assert {output["name"] for output in v2} == {"probability", "decision", "threshold"}  # the row's deciding one
    v1 = json.loads(re.search(r"^v1: (.*)$", shown, re.MULTILINE).group(1))
    assert 0 <= v1[0]["probability"] <= 1 and v1[0]["decision"] in ("Yes", "No")
    assert v1[0]["decision"] == ("Yes" if v1[0]["probability"] >= v1[0]["threshold"] else "No")


def test_the_submit_notebook_compiles_and_skips_its_cluster_cells_without_a_host(tmp_path, monkeypatch):
    monkeypatch.delenv("KFP_HOST", raising=False)
    shown = outputs_of(executed("02-submit-to-kubeflow.ipynb", tmp_path))
    assert re.search(rf"{len(STEPS)} steps inside the exit handler, then run-outcome", shown), shown
    assert "KFP_HOST is not set: skipping the cluster cells" in shown and "run run-1" not in shown


def test_the_submit_notebook_submits_a_run_and_a_recurring_run_through_kfp_client(tmp_path, monkeypatch):
    api = StandInApiServer(kfp_api([]))
    monkeypatch.setenv("KFP_HOST", f"http://127.0.0.1:{api.server.server_port}")
    shown = outputs_of(executed("02-submit-to-kubeflow.ipynb", tmp_path))
    assert "skipping" not in shown
    assert "run run-1: http://127.0.0.1" in shown and "recurring run rr-1 on 0 0 3 * * 1" in shown
    (run,) = [r["body"] for r in api.requests if r["method"] == "POST" and r["path"].endswith("/runs")]
    assert run["runtime_config"]["parameters"] == {"trials": 20, "audit_log": "s3://flowline-audit/churn"}


@pytest.mark.pipeline
def test_your_own_data_goes_from_a_csv_to_a_served_answer_with_its_reports_inline(data_home, tmp_path, monkeypatch):
    """IBM's HR attrition set, which no shipped use case covers: init, validate, run, reports, serve, call."""
    monkeypatch.setenv("FLOWLINE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("FLOWLINE_OWN_DATA_TRIALS", "1")
    notebook = executed("04-your-own-data.ipynb", tmp_path)
    shown = outputs_of(notebook)
    assert "label:" in shown and "column: Attrition" in shown  # the drafted YAML, printed
    assert "\n0 problem(s)" in shown, shown[-3000:]
    assert "Use case hr-attrition-ibm:" in shown and "test metric" in shown  # the end-of-run table
    pages = [output["data"]["text/html"] for cell in notebook.cells for output in cell.get("outputs", [])
             if "text/html" in output.get("data", {})]
    assert pages and "<h2>Intended use</h2>" in html.unescape(pages[0])  # the model card, inline in its own frame
    assert pages[0].startswith("<iframe srcdoc=")  # its stylesheet cannot restyle the notebook
    assert (tmp_path / "runs" / "my-use-case.yaml").is_file()  # drafted in the runs folder, not the checkout
    (answer,) = json.loads(re.search(r"^v1: (.*)$", shown, re.MULTILINE).group(1))
    assert answer["decision"] in ("Yes", "No")
    assert answer["decision"] == ("Yes" if answer["probability"] >= answer["threshold"] else "No")


def test_a_notebook_started_in_its_own_folder_uses_the_checkout_s_runs_folder(tmp_path, monkeypatch):
    """Jupyter starts a kernel in notebooks/; the notebooks still use the runs folder the commands use."""
    from nbclient.exceptions import CellExecutionError

    monkeypatch.delenv("FLOWLINE_RUNS_DIR")
    (tmp_path / "notebooks").mkdir()
    with pytest.raises(CellExecutionError, match=f"need two churn packages under {re.escape(str(tmp_path / 'runs'))}, "
                                                 "found 0"):
        executed("03-ab-analysis.ipynb", tmp_path / "notebooks")
