"""A Katib trial of the generated HPO and NAS Experiments, run in the image as its trialSpec says, the way
Katib's pod webhook rewrites it for the StdOut metrics collector."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from flowline.katib import TRIAL_SHELL
from flowline.storage import POD_SECRET
from manifest_helpers import katib_wrapped
from pods import command_of, podman, podman_run_args

pytestmark = [pytest.mark.xdist_group("containers"), pytest.mark.pipeline]

EXPERIMENTS = Path(__file__).resolve().parents[2] / "katib_experiments"
KATIB_METRICS_DIR = "/var/log/katib"  # where the webhook mounts the StdOut collector's file
# Katib's StdOut collector reads every line of this shape (its default metric filter) and keeps
# the metrics the Experiment names.
KATIB_METRIC_LINE = re.compile(r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)")


def one_assignment(parameter: dict) -> str:
    """A value inside the parameter's feasible space, as Katib's suggestion would substitute it."""
    space = parameter["feasibleSpace"]
    if "list" in space:
        return space["list"][0]
    low, high = float(space["min"]), float(space["max"])
    if parameter["parameterType"] == "int":
        return str(int((low + high) // 2))
    return str(low + (high - low) / 3)


@pytest.mark.parametrize("experiment", ["churn-xgboost-hpo", "churn-mlp-nas"])
def test_a_trial_prints_the_objective_as_the_metrics_collector_reads_it(flowline_image, s3_server, telco_in_s3,
                                                                        experiment, tmp_path):
    spec = yaml.safe_load((EXPERIMENTS / f"{experiment}.yaml").read_text())["spec"]
    pod = spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == flowline_image
    parameters = {p["name"]: p for p in spec["parameters"]}
    assignment = {f"${{trialParameters.{t['name']}}}": one_assignment(parameters[t["reference"]])
                  for t in spec["trialTemplate"]["trialParameters"]}
    command = command_of(container, assignment)
    assert command[:2] == TRIAL_SHELL and "${trialParameters." not in command[2]
    # No internet here: the same file from the S3 server instead of its public URL.
    words = shlex.split(command[2])
    words[words.index("--source") + 1] = telco_in_s3
    container = {**container, "command": TRIAL_SHELL, "args": [shlex.join(words)]}
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    # Two test workers share this machine's two cores: the trial gets one, as a pod limited to one CPU would.
    # Its OpenMP threads follow the limit (OMP_NUM_THREADS from limits.cpu); at two, spinning against the
    # other worker's test, the trial took 433 s instead of 28.
    assert {"name": "OMP_NUM_THREADS", "valueFrom": {"resourceFieldRef": {
        "containerName": container["name"], "resource": "limits.cpu"}}} in container["env"]
    container = {**container, "resources": {**container["resources"], "limits": {
        **container["resources"]["limits"], "cpu": "1"}}}
    # The object store's Secret, as the trial pod's env takes it.
    options = podman_run_args(container, volumes, f"{experiment}-trial", {POD_SECRET: s3_server.environment()})
    # Katib's webhook mounts a volume for the collector's file and runs the trial's line redirected into it.
    metrics = tmp_path / "katib"
    metrics.mkdir()
    metrics.chmod(0o777)  # the trial runs as user 1000
    ran = podman("run", "--rm", "--network", "host", *options, "--volume", f"{metrics}:{KATIB_METRICS_DIR}",
                 flowline_image, *katib_wrapped(container, KATIB_METRICS_DIR), timeout=900, check=False)
    lines = (metrics / "metrics.log").read_text().splitlines()
    assert ran.returncode == 0, (ran.stdout + ran.stderr)[-2000:] + "\n".join(lines)[-2000:]
    assert [path.read_text() for path in metrics.glob("*.pid")] == ["completed\n"]
    collector = spec["metricsCollectorSpec"]["collector"]["kind"]
    assert collector == "StdOut"
    # The file holds stderr too (the trial's progress line); the collector reads the lines its filter matches.
    matched = [KATIB_METRIC_LINE.fullmatch(line) for line in lines if KATIB_METRIC_LINE.fullmatch(line)]
    assert matched and [m.group(0) for m in matched] == lines[-len(matched):], lines
    objective = spec["objective"]["objectiveMetricName"]
    reported = {name: float(value) for name, value, *_ in (m.groups() for m in matched)}
    assert set(reported) == {objective, *spec["objective"].get("additionalMetricNames", [])}
    assert 0.6 < reported[objective] < 1 and reported["iterations"] >= 1
