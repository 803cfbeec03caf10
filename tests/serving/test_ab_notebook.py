"""notebooks/03-ab-analysis.ipynb, executed end to end with nbclient against the local server."""

import re

import pytest

from flowline.package.format import verify
from notebook_runs import executed, outputs_of

pytestmark = pytest.mark.xdist_group("serving")  # the packages are built once, in one worker


def test_the_ab_notebook_designs_runs_analyses_and_decides(churn_package, churn_package_b, data_home, tmp_path,
                                                            monkeypatch):
    monkeypatch.setenv("FLOWLINE_AB_CHAMPION", str(churn_package))
    monkeypatch.setenv("FLOWLINE_AB_CANARY", str(churn_package_b))
    notebook = executed("03-ab-analysis.ipynb", tmp_path)
    shown = outputs_of(notebook)
    assert verify(churn_package_b)["version"] in shown
    assert "356 requests per arm" in shown  # 30 % -> 40 %, alpha 0.05, power 0.8
    retention = dict(re.findall(r"(champion|canary) (\d+\.\d)% of \d+", shown))
    assert 25 < float(retention["champion"]) < 35 and 35 < float(retention["canary"]) < 45
    assert re.search(r"^promote: success rate", shown, re.MULTILINE), shown[-2000:]
    assert any("image/png" in output.get("data", {}) for cell in notebook.cells for output in cell.get("outputs", []))
