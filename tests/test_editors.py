"""Editors and notebooks resolve every flowline module: jedi, the completion engine of IPython, Jupyter and
most editors, finds a name in each top-level folder from the repository root and from notebooks/.

jedi reads files and cannot follow setuptools' editable import hook; the links in flowline/ (setup.cfg,
"package_dir") make the folder the whole namespace, so it has nothing to follow."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_project import setup_cfg

ROOT = Path(__file__).resolve().parents[1]

# A name in each folder mapped into the namespace, and the file that defines it.
DEFINED_IN = {
    "flowline.audit.append": "flowline/audit.py",
    "flowline.components.ingest.component.ingest": "components/ingest/component.py",
    "flowline.pipelines.template.build_pipeline": "pipelines/template.py",
    "flowline.inference_services.server.serve": "inference_services/server.py",
    "flowline.katib_experiments.trial.main": "katib_experiments/trial.py",
}

# Run in a fresh interpreter of this venv, so the working folder is on sys.path as in a kernel started there.
# The namespace is empty: the cell is being typed, its import has not run. IPython completes with
# jedi.Interpreter; editors (jedi-language-server, python-lsp-server) ask jedi.Script within a jedi.Project.
PROBE = """
import json, os, sys
import jedi

found = {}
for name in json.loads(sys.argv[1]):
    module, attribute = name.rsplit(".", 1)
    cell = f"import {module}\\n{name}"
    column = len(name) - 1
    typed = jedi.Interpreter(f"import {module}\\n{module}.", [{}]).complete()
    notebook = jedi.Interpreter(cell, [{}]).goto(2, column, follow_imports=True)
    editor = jedi.Script(cell, project=jedi.Project(os.getcwd())).goto(2, column, follow_imports=True)
    found[name] = {
        "completes": attribute in [completion.name for completion in typed],
        "notebook": [(d.name, str(d.module_path)) for d in notebook],
        "editor": [(d.name, str(d.module_path)) for d in editor],
    }
print(json.dumps(found))
"""


@pytest.mark.parametrize("folder", [".", "notebooks"])
def test_jedi_resolves_a_name_in_every_top_level_folder(folder):
    shown = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(DEFINED_IN))], cwd=ROOT / folder,
                           capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    found = json.loads(shown.stdout)
    for name, file in DEFINED_IN.items():
        attribute = name.rsplit(".", 1)[1]
        assert found[name]["completes"], f"{name}: jedi does not complete {attribute} from {folder}"
        for asked in ("notebook", "editor"):
            definitions = [(defined, Path(path).resolve()) for defined, path in found[name][asked]]
            assert definitions == [(attribute, ROOT / file)], f"{name} from {folder} ({asked}): {definitions}"


def test_flowline_links_to_every_mapped_folder():
    mapping = dict(line.split(" = ") for line in setup_cfg()["options"]["package_dir"].strip().splitlines())
    for name, folder in mapping.items():
        if name != "flowline":
            link = ROOT / Path(*name.split("."))
            # relative, so the link holds in any checkout and in the image's copy of the folders
            assert link.is_symlink() and os.readlink(link) == f"../{folder}", f"{link} should link to ../{folder}"
