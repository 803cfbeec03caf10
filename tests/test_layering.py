"""The layers hold: a core that imports nothing above it, leaves that never reach into each other, no circles.

Read from the source, every import counted (also those inside functions):
- the core, flowline/, imports only the core;
- a pipeline step, components/STEP/, imports the core, its own folder and components/__init__.py;
- the servers, inference_services/, import the core and their own folder;
- the Katib trial, katib_experiments/, imports the core and its own folder;
- pipelines/ (the template, local runs, the CLI) may import anything but a step's insides: of a step,
  only its component.py.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
FOLDERS = {"flowline.components": "components", "flowline.pipelines": "pipelines",
           "flowline.inference_services": "inference_services", "flowline.katib_experiments": "katib_experiments",
           "flowline": "flowline"}


def source_files() -> list[Path]:
    """Every source file once: flowline/'s links to the other folders (for editors) are not followed."""
    return sorted(Path(folder, name) for top in FOLDERS.values() for folder, _, names in os.walk(ROOT / top)
                  for name in names if name.endswith(".py"))


def file_of(module: str) -> Path | None:
    """The repository file a `flowline...` module name refers to (a package: its __init__.py)."""
    for prefix, folder in FOLDERS.items():  # the longer prefixes first
        if module == prefix or module.startswith(prefix + "."):
            base = ROOT / folder / Path(*module[len(prefix):].lstrip(".").split(".") or [""])
            for candidate in (base.with_suffix(".py"), base / "__init__.py"):
                if candidate.is_file():
                    return candidate
            return None
    return None


def imports_of(path: Path) -> set[Path]:
    """The repository files `path` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        for name in names:
            target = file_of(name)
            if target is not None and target != path:
                found.add(target)
    return found


GRAPH = {path: imports_of(path) for path in source_files()}


def unit(path: Path) -> str:
    """The layer unit a file belongs to: core, step:NAME, components (the steps' shared face), servers, trial, pipelines."""
    parts = path.relative_to(ROOT).parts
    if parts[0] == "components":
        return f"step:{parts[1]}" if len(parts) > 2 else "components"
    return {"flowline": "core", "inference_services": "servers", "katib_experiments": "trial",
            "pipelines": "pipelines"}[parts[0]]


def allowed(source: Path, target: Path) -> bool:
    have, wanted = unit(source), unit(target)
    if wanted == "core" or have == wanted:
        return True
    if have.startswith("step:"):
        return wanted == "components"
    if have == "pipelines":
        return not wanted.startswith("step:") or target.name == "component.py"
    return False


def test_the_graph_is_read_from_every_folder():
    assert {unit(path).split(":")[0] for path in GRAPH} == {"core", "step", "components", "servers", "trial",
                                                             "pipelines"}
    assert sum(len(targets) for targets in GRAPH.values()) > 100  # the imports were found, not missed


@pytest.mark.parametrize("source", sorted(GRAPH), ids=lambda path: str(path.relative_to(ROOT)))
def test_imports_stay_in_their_layer(source: Path):
    wrong = sorted(str(target.relative_to(ROOT)) for target in GRAPH[source] if not allowed(source, target))
    assert not wrong, f"{source.relative_to(ROOT)} ({unit(source)}) imports {wrong}"


def test_no_file_imports_itself_back_through_others():
    """No circles: a depth-first walk never meets a file still on its own path."""
    state: dict[Path, str] = {}

    def walk(path: Path, trail: list[Path]) -> None:
        state[path] = "open"
        for target in sorted(GRAPH.get(path, ())):
            if state.get(target) == "open":
                circle = trail[trail.index(target):] + [target]
                raise AssertionError("import circle: " + " -> ".join(str(p.relative_to(ROOT)) for p in circle))
            if target not in state:
                walk(target, [*trail, target])
        state[path] = "done"

    for path in sorted(GRAPH):
        if path not in state:
            walk(path, [path])


def test_the_rules_catch_what_they_forbid():
    """The rules themselves: each forbidden kind of import is refused."""
    core, step = ROOT / "flowline" / "use_case.py", ROOT / "components" / "train" / "training.py"
    other_step, face = ROOT / "components" / "bias" / "fairness.py", ROOT / "components" / "bias" / "component.py"
    server, template = ROOT / "inference_services" / "model.py", ROOT / "pipelines" / "template.py"
    assert not allowed(core, step) and not allowed(core, template)
    assert not allowed(step, other_step) and not allowed(step, server) and not allowed(server, template)
    assert not allowed(template, other_step) and allowed(template, face) and allowed(step, core)
