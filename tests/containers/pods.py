"""Running the flowline image with podman exactly as a Kubernetes pod spec says.

`make image` builds the image (podman on a base made from Debian packages). `podman_run_args`
turns a container spec from the rendered manifests into `podman run` options: the image,
command and args, env, the securityContext (user, read-only root, capabilities, no privilege
escalation), cpu and memory limits, and emptyDir volume mounts as tmpfs. Nothing is relaxed
for the tests: a fault that a pod would hit, the container hits too.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Sequence

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = ROOT / "build" / "containers" / "containers.conf"
BUILD_TIMEOUT_S = 1800
RESULTS = ROOT / "build" / "containers" / "timings.json"
UNITS = {"": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9}


def record(key: str, value: object) -> None:
    """Keep a measurement (build and step times, memory) in build/containers/timings.json."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    kept = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    RESULTS.write_text(json.dumps({**kept, key: value}, indent=1))


def podman_env() -> dict[str, str]:
    """The environment podman needs here: runc and ulimits within the hard limit (see the Makefile)."""
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:3])} ... exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def cannot_run_containers(reason: str) -> None:
    """Skip where this machine cannot run containers, except under CI=true, where that is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def build_image() -> tuple[str, float]:
    """`make image`: the flowline image, built with podman. Returns its name and the build's wall time."""
    from flowline.components import DEFAULT_IMAGE

    for tool in ("podman", "runc", "mmdebstrap"):
        if shutil.which(tool) is None:
            cannot_run_containers(f"{tool} is not installed; `make tools` installs it (Debian packages)")
    subprocess.run(["make", "-s", "-C", str(ROOT), str(CONTAINERS_CONF.relative_to(ROOT))], check=True)
    info = podman("info", check=False)
    if info.returncode != 0:
        cannot_run_containers(f"podman cannot run containers on this machine: {info.stderr.strip()[-500:]}")
    started = time.monotonic()
    built = subprocess.run(["make", "-s", "-C", str(ROOT), "image", f"IMAGE={DEFAULT_IMAGE}"],
                           capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    if built.returncode != 0:
        raise RuntimeError(f"make image failed:\n{built.stdout[-3000:]}\n{built.stderr[-5000:]}")
    return DEFAULT_IMAGE, time.monotonic() - started


def quantity(text: str | int) -> float:
    """A Kubernetes quantity ("1Gi", "250m", "2") as a number (bytes, or cores)."""
    text = str(text)
    if text.endswith("m"):
        return int(text[:-1]) / 1000
    number, unit = re.fullmatch(r"([\d.]+)([A-Za-z]*)", text).groups()
    return float(number) * UNITS[unit]


def podman_run_args(container: dict, volumes: dict[str, dict], name: str,
                    secrets: dict[str, dict[str, str]] | None = None) -> list[str]:
    """`podman run` options for a pod's container spec (`volumes`: the pod's volumes by name; `secrets`:
    the Secrets' data by name, for env valueFrom secretKeyRef; a resourceFieldRef to the cpu limit is
    the limit rounded up, as the kubelet gives it)."""
    security = container.get("securityContext", {})
    args = ["--name", name]
    if "runAsUser" in security:
        args += ["--user", str(security["runAsUser"])]
    if security.get("readOnlyRootFilesystem"):
        args += ["--read-only", "--read-only-tmpfs=false"]  # only the declared volumes are writable
    if security.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    for capability in security.get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", capability.lower()]
    limits = container.get("resources", {}).get("limits", {})
    if "memory" in limits:
        memory = str(int(quantity(limits["memory"])))
        args += ["--memory", memory, "--memory-swap", memory]  # no swap, as in a pod
    if "cpu" in limits:
        args += ["--cpus", str(quantity(limits["cpu"]))]
    for variable in container.get("env", []):
        if "value" in variable:
            args += ["--env", f"{variable['name']}={variable['value']}"]
            continue
        if "resourceFieldRef" in variable["valueFrom"]:
            field = variable["valueFrom"]["resourceFieldRef"]["resource"]
            if field != "limits.cpu":
                raise ValueError(f"env {variable['name']}: only limits.cpu is resolved here, got {field!r}")
            args += ["--env", f"{variable['name']}={math.ceil(quantity(limits['cpu']))}"]
            continue
        reference = variable["valueFrom"]["secretKeyRef"]
        secret = (secrets or {}).get(reference["name"], {})
        if reference["key"] in secret:
            args += ["--env", f"{variable['name']}={secret[reference['key']]}"]
        elif not reference.get("optional"):
            raise ValueError(f"env {variable['name']}: Secret {reference['name']!r} has no key {reference['key']!r}")
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "emptyDir" not in volume:
            raise ValueError(f"volume {mount['name']!r}: only emptyDir volumes are run here, got {volume}")
        size = volume["emptyDir"].get("sizeLimit")
        options = "rw,mode=1777" + (f",size={int(quantity(size))}" if size else "")
        args += ["--tmpfs", f"{mount['mountPath']}:{options}"]
    return args


def command_of(container: dict, substitutions: dict[str, str]) -> list[str]:
    """The container's command and args, with placeholders such as {{.Name}} filled in."""
    def fill(text: str) -> str:
        for placeholder, value in substitutions.items():
            text = text.replace(placeholder, value)
        return text
    return [fill(part) for part in (*container.get("command", []), *container.get("args", []))]


def run_detached(image: str, options: Sequence[str], command: Sequence[str]) -> str:
    """Start a container in the background; return its id."""
    return podman("run", "--detach", *options, image, *command).stdout.strip()


def logs(container: str) -> str:
    result = podman("logs", container, check=False)
    return result.stdout + result.stderr


def stop(container: str) -> None:
    podman("rm", "--force", "--time", "5", container, check=False)


def memory_peak_bytes(container: str) -> int:
    """The container's peak memory use, from its cgroup (v1 max_usage_in_bytes, v2 memory.peak)."""
    script = ("cat /sys/fs/cgroup/memory/memory.max_usage_in_bytes 2>/dev/null "
              "|| cat /sys/fs/cgroup/memory.peak")
    return int(podman("exec", container, "sh", "-c", script).stdout.strip())


def state(container: str) -> dict:
    return json.loads(podman("inspect", container, "--format", "{{json .State}}").stdout)
