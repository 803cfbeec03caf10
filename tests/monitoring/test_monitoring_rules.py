"""The PrometheusRule: promtool checks and unit-tests it, and every alert is documented and tested."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from promql_names import MONITORING, rule_groups, rules

HERE = Path(__file__).resolve().parent
# The unit-test files name this rules file; the tests write it from the PrometheusRule.
RULES_FILE = "flowline-alerts.rules.yaml"
UNIT_TEST_FILES = ("alerts_test.yaml", "alerts_long_test.yaml")
RUNBOOKS = MONITORING / "RUNBOOKS.md"
RUNBOOK_BASE = "https://github.com/flowline-ml/flowline/blob/main/kustomize/base/monitoring/RUNBOOKS.md"
SEVERITIES = {"critical", "warning", "info"}

ALERTS = [rule for rule in rules() if "alert" in rule]


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    """A folder with the rules extracted from the PrometheusRule and the unit-test files."""
    (tmp_path / RULES_FILE).write_text(yaml.safe_dump({"groups": rule_groups()}, sort_keys=False))
    for name in UNIT_TEST_FILES:
        shutil.copy(HERE / name, tmp_path / name)
    return tmp_path


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a command in `cwd`, capturing its output. promtool's unit tests take about 11 s alone, and five times
    that on a machine running other tests."""
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_promtool_checks_the_rules(promtool: str, rules_dir: Path) -> None:
    result = run([promtool, "check", "rules", RULES_FILE], rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass(promtool: str, rules_dir: Path) -> None:
    result = run([promtool, "test", "rules", *UNIT_TEST_FILES], rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(UNIT_TEST_FILES), result.stdout


def unit_tests() -> list[dict]:
    """The promtool unit-test files, parsed."""
    return [yaml.safe_load((HERE / name).read_text()) for name in UNIT_TEST_FILES]


def test_unit_tests_read_the_extracted_rules_recording_group_first() -> None:
    """Without group_eval_order promtool orders groups at random, and alerts that read a
    recorded series may miss it."""
    group_names = [group["name"] for group in rule_groups()]
    assert group_names[0] == "flowline.recording"
    for unit_test in unit_tests():
        assert unit_test["rule_files"] == [RULES_FILE]
        assert unit_test["group_eval_order"] == group_names


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for unit_test in unit_tests():
        for group in unit_test["tests"]:
            for case in group.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    alerts = {rule["alert"] for rule in ALERTS}
    assert firing | silent == alerts, "unit tests name alerts the rule does not have, or miss some"
    assert alerts - firing == set(), "alerts without a test where they fire"
    assert alerts - silent == set(), "alerts without a test where they stay silent"


def test_at_least_25_distinct_alerts() -> None:
    names = [rule["alert"] for rule in ALERTS]
    assert len(names) >= 25
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"Flowline[A-Z][A-Za-z0-9]+", name) for name in names), names


@pytest.mark.parametrize("rule", ALERTS, ids=[rule["alert"] for rule in ALERTS])
def test_alert_has_severity_and_annotations(rule: dict) -> None:
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert annotations["summary"].strip()
    assert annotations["description"].strip()
    assert annotations["runbook_url"] == f"{RUNBOOK_BASE}#{rule['alert'].lower()}"


def github_anchors(markdown: str) -> set[str]:
    """Anchors GitHub gives the headings of a Markdown file."""
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading).strip().lower().replace(" ", "-") for heading in headings}


def test_every_runbook_url_anchor_exists_and_every_alert_section_is_an_alert() -> None:
    markdown = RUNBOOKS.read_text()
    anchors = github_anchors(markdown)
    alerts = {rule["alert"] for rule in ALERTS}
    for rule in ALERTS:
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor in anchors, f"{rule['alert']}: RUNBOOKS.md has no heading for #{anchor}"
    sections = set(re.findall(r"^## (Flowline\w+)\s*$", markdown, re.MULTILINE))
    assert sections == alerts, "RUNBOOKS.md sections and alerts differ"


def test_github_anchors() -> None:
    assert github_anchors("# flowline runbooks\n## FlowlineModelStale\ntext # not a heading\n") == {
        "flowline-runbooks", "flowlinemodelstale",
    }
