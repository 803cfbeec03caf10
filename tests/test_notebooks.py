"""The notebooks are committed clean: no outputs, no execution counts, valid nbformat, documented."""

import nbformat
import pytest

from notebook_runs import NOTEBOOKS

NAMES = sorted(path.name for path in NOTEBOOKS.glob("*.ipynb"))


def test_the_notebooks_are_there_and_documented():
    assert "03-ab-analysis.ipynb" in NAMES
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
