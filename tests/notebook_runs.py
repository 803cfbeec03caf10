"""Executing the notebooks in notebooks/ with nbclient, on a Python kernel of this interpreter."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CELL_TIMEOUT_S = 600


def executed(name: str, working_dir: Path) -> nbformat.NotebookNode:
    """Run every cell of notebooks/`name` in `working_dir`; nbclient raises CellExecutionError on the
    first failing cell, with its traceback. The kernel inherits this process's environment."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                   resources={"metadata": {"path": str(working_dir)}}).execute()
    return notebook


def outputs_of(notebook: nbformat.NotebookNode) -> str:
    """Every cell's text output (streams and results), joined, to check what the notebook showed."""
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", "") or output.get("data", {}).get("text/plain", ""))
    return "\n".join(texts)
