"""The README's serving examples, re-run against a real package: every `curl ... -d '<request>'` block
with its `# <answer>` line, sent to a server on loopback, must answer with the same shape (the
same fields, nested the same way, lists of the same length) and the same decision or segment.
Numbers and ids such as the version may differ from run to run; what a reader acts on may not."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx

README = Path(__file__).resolve().parents[1] / "README.md"
EXAMPLE = re.compile(r"^curl -s localhost:8080(?P<path>\S+) -H '[^']*' -d '(?P<request>.*?)'\n# (?P<answer>\{[^\n]*\})$",
                     re.M | re.S)
DECIDING = ("decision", "segment")  # the fields whose value must match, wherever they are


def examples(model: str) -> list[tuple[str, Any, Any]]:
    """(path, request, answer) of every README example that calls `model`."""
    found = [(m["path"], json.loads(m["request"]), json.loads(m["answer"])) for m in EXAMPLE.finditer(README.read_text())]
    return [example for example in found if f"/models/{model}" in example[0]]


def shape(value: Any) -> Any:
    """The value's structure: dicts by their keys, lists by length, leaves by kind (numbers are alike)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__


def decisions(value: Any) -> list:
    """Every decision or segment in an answer, in order: v1 fields, or v2 output tensors of that name."""
    if isinstance(value, dict):
        if value.get("name") in DECIDING and "data" in value:
            return list(value["data"])
        return [item for key, child in value.items() for item in
                ([child] if key in DECIDING else decisions(child))]
    if isinstance(value, list):
        return [item for child in value for item in decisions(child)]
    return []


def check(url: str, model: str) -> int:
    """Send each README example for `model`; assert shape and decisions; return how many were checked."""
    shown = examples(model)
    with httpx.Client(base_url=url, timeout=30) as client:
        for path, request, expected in shown:
            answer = client.post(path, json=request)
            assert answer.status_code == 200, (path, answer.text)
            assert shape(answer.json()) == shape(expected), (path, answer.json(), expected)
            assert decisions(answer.json()) == decisions(expected), (path, answer.json(), expected)
    return len(shown)
