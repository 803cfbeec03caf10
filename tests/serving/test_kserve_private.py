"""KServe's private surface: every private name flowline's server uses is listed, and the pinned KServe has it."""

import ast
import inspect
from pathlib import Path

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from flowline.inference_services import kserve_private

SERVER = Path(kserve_private.__file__).with_name("server.py")


def test_the_pinned_kserve_has_every_listed_private_method_and_attribute():
    for cls, names in kserve_private.PRIVATE_METHODS.items():
        for name in names:
            assert callable(getattr(cls, name, None)), f"KServe's {cls.__name__} has no method {name}"
    for cls, names in kserve_private.PRIVATE_ATTRIBUTES.items():
        source = inspect.getsource(cls)  # attributes are set by KServe's own methods, not on the class
        for name in names:
            assert f"self.{name}" in source, f"KServe's {cls.__name__} no longer uses the attribute {name}"


def private_names_used(path: Path) -> set[str]:
    """Private names the module reaches on `self` or `super()`, less the ones it defines itself."""
    tree = ast.parse(path.read_text())
    defined = {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            on_self = isinstance(owner, ast.Name) and owner.id == "self"
            on_super = isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super"
            if on_super or (on_self and node.attr not in defined):
                used.add(node.attr)
    overridden = defined & kserve_private.private_names()
    return used | overridden


def test_the_server_uses_no_private_kserve_name_that_is_not_listed():
    used = private_names_used(SERVER)
    assert used == kserve_private.private_names(), (
        f"server.py uses {sorted(used - kserve_private.private_names())} without listing them in kserve_private.py, "
        f"or no longer uses {sorted(kserve_private.private_names() - used)}")


def test_the_check_sees_a_private_name_it_was_not_told_about(tmp_path):
    module = tmp_path / "server.py"
    module.write_text("class S(X):\n    def start(self):\n        self._new_private_thing()\n        super()._other()\n")
    assert private_names_used(module) == {"_new_private_thing", "_other"}


def test_the_pinned_uvicorn_builds_its_protocol_as_the_workers_accept_loop_does():
    source = inspect.getsource(uvicorn.Server)
    for name in kserve_private.UVICORN_SERVER_ATTRIBUTES:
        assert f"self.{name}" in source, f"uvicorn's Server no longer has {name}"
    startup = inspect.getsource(uvicorn.Server.startup)
    for argument in kserve_private.UVICORN_PROTOCOL_ARGUMENTS:
        assert argument in startup, f"uvicorn's Server.startup no longer makes its protocol with {argument}"


def test_the_pinned_uvicorn_protocol_has_what_the_one_write_protocol_overrides_and_reads():
    source = inspect.getsource(HttpToolsProtocol)
    for text in kserve_private.UVICORN_HTTPTOOLS_PROTOCOL:
        assert text in source, f"uvicorn's HttpToolsProtocol no longer has {text!r}"
