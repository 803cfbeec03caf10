"""kfp.local's DockerRunner against podman's Docker API, with each task run as a pipeline pod runs.

kfp.local builds each compiled task's executor input and command line, and its DockerTaskHandler
runs that command in the task's image with the pipeline root mounted. kfp 2.13 gives the
container no other settings, so `pod_settings` wraps the one function that starts it, adding
what a KFP pod of flowline has: uid 1000, a read-only root filesystem with a writable /tmp,
all capabilities dropped, and the object-store credentials in the environment, as a Kubernetes
Secret mounted with kfp-kubernetes' use_secret_as_env puts them there. Host networking stands
in for the cluster network (the S3 server listens on loopback).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path
from typing import Iterator

from pods import podman_env

POD_USER = "1000"
TMP_SIZE = "1g"
# Under a read-only root, podman's Docker API also mounts tmpfs on these (and cannot be told not to);
# a pod has no such scratch space, so they are covered read-only.
NOT_WRITABLE_IN_PODS = ("/run", "/var/tmp")


@contextlib.contextmanager
def docker_api(workdir: Path) -> Iterator[str]:
    """podman's Docker-compatible API on a unix socket; yields the DOCKER_HOST to reach it."""
    socket = workdir / "podman.sock"
    service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{socket}"], env=podman_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            if service.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"podman system service did not start: {service.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
        yield f"unix://{socket}"
    finally:
        service.terminate()
        service.wait(timeout=30)


@contextlib.contextmanager
def pod_settings(environment: dict[str, str], empty_dir: Path) -> Iterator[list[dict]]:
    """Run every kfp.local Docker task as flowline's pipeline pods run (see the module docstring).

    Yields a list that gains, for each task, its container's settings as podman reports them.
    `empty_dir` is an empty folder, mounted read-only where podman would add writable scratch space.
    """
    from docker.types import Mount
    from kfp.local import docker_task_handler

    covers = [Mount(path, str(empty_dir), type="bind", read_only=True) for path in NOT_WRITABLE_IN_PODS]

    original = docker_task_handler.run_docker_container
    started: list[dict] = []

    def run_as_pod(client, image: str, command: list[str], volumes: dict) -> int:
        container = client.containers.run(
            image=image, command=command, detach=True, volumes=volumes, user=POD_USER, read_only=True,
            tmpfs={"/tmp": f"rw,mode=1777,size={TMP_SIZE}"}, cap_drop=["ALL"], security_opt=["no-new-privileges"],
            environment=environment, network_mode="host", mounts=covers)
        container.reload()
        started.append({"image": image, "user": container.attrs["Config"]["User"],
                        "read_only": container.attrs["HostConfig"]["ReadonlyRootfs"],
                        "tmpfs": container.attrs["HostConfig"].get("Tmpfs") or {},
                        "cap_drop": container.attrs["HostConfig"].get("CapDrop") or []})
        try:
            for line in container.logs(stream=True, follow=True):
                print(line.decode(), end="")
            return container.wait()["StatusCode"]
        finally:
            container.remove(force=True)

    docker_task_handler.run_docker_container = run_as_pod
    try:
        yield started
    finally:
        docker_task_handler.run_docker_container = original


@contextlib.contextmanager
def folders_pods_can_write() -> Iterator[None]:
    """Folders made meanwhile (the run folder, kfp.local's task roots) are writable by uid 1000, as a
    pod may write its artifact store."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)
