"""The `flowline` command line as a package: every command documented, `serve` the one server entry point."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import pytest

from flowline.pipelines.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def commands_of(parser: argparse.ArgumentParser, prefix: str = "flowline") -> dict[str, tuple]:
    """Every command and subcommand by its full name ("flowline canary promote"): (its parser, its help)."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                found[f"{prefix} {name}"] = (sub, helps.get(name))
                found.update(commands_of(sub, f"{prefix} {name}"))
    return found


def test_every_command_and_option_has_a_help_text():
    commands = commands_of(build_parser())
    assert {"flowline serve", "flowline canary promote", "flowline audit anchor", "flowline ab design"} <= set(commands)
    for name, (command, text) in commands.items():
        assert text, f"{name}: no help text"
        for action in command._actions:
            if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                assert action.help, f"{name} {'/'.join(action.option_strings) or action.dest}: no help text"


@pytest.mark.parametrize("argv, message", [
    (["--on-drift", "local"], "--on-drift: only with --drift-monitor"),
    (["--drift-monitor", "--canary", "churn=PACKAGE"], "--canary and --prediction-log: only for the model server"),
    (["--drift-monitor", "--online-store", "memory://"], "--online-store: only for the model server"),
    (["--canary", "other=PACKAGE"], "--canary other: no model of that name is served"),
    (["PACKAGE", "--drift-monitor"], "--drift-monitor: give one package, not 2"),
    (["--batch-wait-ms", "-1"], "--batch-wait-ms -1: give 0 (batching off) or more milliseconds"),
    (["--max-batch-rows", "0"], "--max-batch-rows 0: give at least 1"),
    (["--max-batch", "0"], "--max-batch 0: give at least 1"),
    (["--max-explain-rows", "0"], "--max-explain-rows 0: give at least 1"),
    (["--port", "-5"], "--port -5: give 1 to 65535"),
    (["--max-body-mb", "0"], "--max-body-mb 0: give a positive size"),
])
def test_serve_refuses_options_that_do_not_fit_together(argv, message, tmp_path: Path, capsys):
    (tmp_path / "manifest.json").write_text("{}")  # a package folder, as far as naming it goes
    folder = str(tmp_path)
    with pytest.raises(SystemExit) as caught:
        main(["serve", f"churn={folder}", *[part.replace("PACKAGE", folder) for part in argv]])
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_a_folder_named_like_a_use_case_does_not_hide_it(tmp_path: Path, monkeypatch, capsys):
    """`flowline score clv --output clv/scores.parquet` makes a folder ./clv: `clv` still names the use case."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "churn").mkdir()
    assert main(["serve", "churn", "--runs-dir", str(tmp_path / "runs")]) == 1
    assert "no package of use case 'churn'" in capsys.readouterr().err  # the use case, not the folder


def test_serve_names_a_folder_that_is_not_a_package(tmp_path: Path, capsys):
    assert main(["serve", str(tmp_path)]) == 1
    assert f"{tmp_path} is a folder without manifest.json, so not a model package" in capsys.readouterr().err
    for broken in ("{", "[1]"):  # a manifest that is not JSON, or not an object: one line, no traceback
        (tmp_path / "manifest.json").write_text(broken)
        assert main(["serve", str(tmp_path)]) == 1
        error = capsys.readouterr().err
        assert f"{tmp_path}/manifest.json" in error and "Traceback" not in error, error


@pytest.mark.parametrize("trials", ["-3", "0", "100001", "ten"])
def test_run_refuses_a_trial_budget_the_use_case_would_refuse(trials, capsys):
    """0 ran the use case's whole budget, as if --trials were left out; 200,000 passed though a use case caps it."""
    with pytest.raises(SystemExit) as caught:
        main(["run", "churn", "--trials", trials])
    assert caught.value.code == 2
    assert f"argument --trials: expected 1 to 100,000 trials (or leave it out: the use case's budget), got {trials!r}" \
        in capsys.readouterr().err


def test_the_runs_verdict_names_the_kind_of_gate_that_failed():
    from flowline.pipelines.local_run import gate_verdict

    passed, failed = {"value": 0.85, "passed": True}, {"value": 0.55, "passed": False}
    fairness_only = {"gates": {"roc_auc": passed}, "fairness": {"gender": {"gate": "pass"}, "SeniorCitizen": {"gate": "fail"}}}
    assert gate_verdict(fairness_only) == "FAIRNESS GATE FAILED: SeniorCitizen"  # every quality gate passed
    assert gate_verdict({"gates": {"roc_auc": failed, "auprc": passed}, "fairness": {}}) == "QUALITY GATE FAILED: roc_auc"
    both = {"gates": {"roc_auc": failed}, "fairness": {"SeniorCitizen": {"gate": "fail"}}}
    assert gate_verdict(both) == "QUALITY GATE FAILED: roc_auc; FAIRNESS GATE FAILED: SeniorCitizen"


def test_a_short_repository_token_is_one_line(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("FLOWLINE_REPOSITORY_TOKEN", "tok")
    assert main(["serve", str(tmp_path)]) == 1
    assert capsys.readouterr().err == ("flowline: FLOWLINE_REPOSITORY_TOKEN: 3 characters, give at least 16 "
                                       "(e.g. `openssl rand -hex 32`)\n")


def test_the_retraining_action_needs_its_kfp_host(tmp_path: Path, capsys):
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(SystemExit) as caught:
        main(["serve", "--drift-monitor", f"churn={tmp_path}", "--on-drift", "kfp"])
    assert caught.value.code == 2
    assert "on-drift action kfp needs the KFP host (--kfp-host)" in capsys.readouterr().err


def imported_modules(folder: Path) -> dict[str, set[str]]:
    """Each module's imports (absolute names), from its source."""
    imports = {}
    for path in folder.rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        imports[str(path.relative_to(ROOT))] = names
    return imports


def test_the_servers_import_no_pipeline_module_and_the_core_nothing_above_it():
    """The drift monitor gets its retraining action from `flowline serve`; it never imports the pipelines."""
    above_core = ("flowline.components", "flowline.pipelines", "flowline.inference_services",
                  "flowline.katib_experiments")
    for folder, forbidden in (("inference_services", ("flowline.pipelines",)), ("flowline", above_core)):
        for module, names in imported_modules(ROOT / folder).items():
            wrong = sorted(name for name in names if name.startswith(forbidden))
            assert not wrong, f"{module} imports {wrong}"


@pytest.mark.parametrize("words, expected", [
    ("flowline se", {"serve"}),
    ("flowline canary pro", {"promote"}),
    ("flowline serve --drift-", {"--drift-monitor"}),
    ("flowline fea", {"features"}),
    ("flowline features d", {"diff"}),
    ("flowline features diff --j", {"--json"}),
])
def test_bash_completes_commands_and_options_from_the_parser(words: str, expected: set[str], tmp_path: Path, capsys):
    """The script `flowline completion bash` prints, loaded into a real bash, completes what the parser has."""
    import subprocess

    assert main(["completion", "bash"]) == 0
    script = tmp_path / "flowline.bash"
    script.write_text(capsys.readouterr().out)
    words_list = words.split(" ")
    probe = (f"source {script}; COMP_WORDS=({' '.join(words_list)}); COMP_CWORD={len(words_list) - 1}; "
             f"COMP_LINE='{words}'; COMP_POINT={len(words)}; _shtab_flowline flowline; "
             "printf '%s\\n' \"${COMPREPLY[@]}\"")
    shown = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert expected <= set(shown) and all(word.startswith(words_list[-1]) for word in shown), shown


@pytest.mark.parametrize(("argv", "said"), [
    (["run", "churn", "--time-budget", "-3"], "argument --time-budget: expected seconds above 0, got '-3'"),
    (["run", "churn", "--time-budget", "soon"], "argument --time-budget: expected seconds above 0, got 'soon'"),
    (["run", "churn", "--time-budget", "60", "--trials", "5"], "argument --trials: not allowed with argument"),
])
def test_a_bad_time_budget_is_a_usage_error_naming_the_option(argv, said, capsys):
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2 and said in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "usage", "said"), [
    (["run", "churn", "--trails", "1"], "usage: flowline run ", "flowline run: error: unrecognized arguments: --trails 1"),
    (["run"], "usage: flowline run ", "flowline run: error: give a use case name or --use-case PATH (exactly one)"),
    (["canary", "promote"], "usage: flowline canary promote ", "flowline canary promote: error: canary promote: give"),
    (["features", "list", "churn", "x"], "usage: flowline features list ", "unrecognized arguments: x"),
])
def test_a_mistake_is_shown_with_the_commands_own_usage(argv, usage, said, capsys):
    """They showed `usage: flowline [-h] [--version] COMMAND ...`, which says nothing of --trials (the README
    audit)."""
    with pytest.raises(SystemExit) as caught:
        main(argv)
    shown = capsys.readouterr().err
    assert caught.value.code == 2 and shown.startswith(usage) and said in shown, shown


def test_a_server_that_cannot_start_says_why_without_a_log_file(tmp_path: Path):
    """What a notebook calls: running_server with no log_path kept nothing, and said only '(no log kept)'."""
    from flowline.inference_services.local_server import running_server

    with pytest.raises(RuntimeError, match=f"exited with code 1:\n(.|\n)*'{tmp_path / 'nothing'}' is no package folder"):
        with running_server([f"churn={tmp_path / 'nothing'}"]):
            pass
