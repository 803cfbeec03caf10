"""A real S3 server on loopback for tests: one Ceph monitor, one in-memory OSD, one RADOS Gateway.

No MinIO server can be installed here, so tests talk S3 to Ceph's gateway, a production S3
implementation, run unprivileged from the Debian packages that tests/tools/fetch-ceph.sh unpacks.
"""

from __future__ import annotations

import http.client
import os
import re
import secrets
import signal
import socket
import string
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NoReturn

# The whole startup (monitor, OSD, gateway, user) must finish within this; it takes ~13 s.
STARTUP_TIMEOUT_S = 90.0
# A daemon that ignores SIGTERM this long gets SIGKILL (the OSD can hang once the monitor is gone).
STOP_GRACE_S = 10.0
POLL_S = 0.25
# Tries for each cluster client command, and starts for each daemon (see _Cluster).
CLIENT_ATTEMPTS = 5
DAEMON_STARTS = 5
TAIL_LINES = 40
KEY_ALPHABET = string.ascii_uppercase + string.digits


@dataclass(frozen=True)
class S3Server:
    """Where the gateway listens ("127.0.0.1:PORT", no scheme) and a user's keys for it."""

    endpoint: str
    access_key: str
    secret_key: str

    def environment(self) -> dict[str, str]:
        """The variables flowline's object storage reads, as the object-store Secret puts them into a pod."""
        from flowline import storage

        return {storage.ENDPOINT_ENV: self.endpoint, storage.ACCESS_KEY_ENV: self.access_key,
                storage.SECRET_KEY_ENV: self.secret_key}


def _free_ports(count: int) -> list[int]:
    """Distinct loopback ports nothing listens on now (all held open at once so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _tail(path: Path) -> str:
    """The last lines of a log, for error messages; says so when the log was never written."""
    if not path.is_file():
        return f"--- {path}: not written ---"
    lines = path.read_text(errors="replace").splitlines()[-TAIL_LINES:]
    return f"--- last {len(lines)} lines of {path} ---\n" + "\n".join(lines)


def _ceph_conf(root: Path, workdir: Path, fsid: str, mon_port: int, s3_port: int) -> str:
    """A one-node cluster: no auth, one copy of everything, the OSD's data in memory."""
    lib = root / "usr/lib/x86_64-linux-gnu"
    return f"""\
[global]
fsid = {fsid}
mon host = v1:127.0.0.1:{mon_port}
ms bind msgr2 = false
auth cluster required = none
auth service required = none
auth client required = none
run dir = {workdir}
admin socket = {workdir}/$name.asok
log file = {workdir}/$name.log
pid file = {workdir}/$name.pid
mon cluster log file = {workdir}/ceph.log
plugin dir = {lib}/ceph
erasure code dir = {lib}/ceph/erasure-code
osd class dir = {lib}/rados-classes
osd objectstore = memstore
memstore device bytes = 2147483648
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0

[mon]
mon data = {workdir}/mon.$id

[osd]
osd data = {workdir}/osd.$id
osd max object name len = 460
osd max object namespace len = 64

[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:{s3_port}
rgw data = {workdir}/rgw.a
"""


@dataclass
class _Daemon:
    """A daemon this module started: its command, where its output goes, how often it started."""

    argv: list[str]
    out: IO[bytes]
    process: subprocess.Popen[bytes]
    starts: int = 1


class _Cluster:
    """Runs the cluster's commands and daemons against one ceph.conf, logging each into workdir.

    Ceph 16's clients (the CLI, radosgw-admin, and the OSD and gateway themselves) can send their
    first monitor command before they have the cluster's fsid, and the monitor refuses it ("wrong
    fsid", EPERM): about one startup in four hits it. So client commands are retried, and a daemon
    that exits while being waited for is started again.
    """

    def __init__(self, root: Path, workdir: Path) -> None:
        self.root = root
        self.workdir = workdir
        self.deadline = time.monotonic() + STARTUP_TIMEOUT_S
        self.daemons: list[_Daemon] = []
        lib = root / "usr/lib/x86_64-linux-gnu"
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "VIRTUAL_ENV")}
        self.env.update(
            PATH=f"{root}/usr/bin:{os.environ.get('PATH', '/usr/bin:/bin')}",
            LD_LIBRARY_PATH=f"{lib}:{lib}/ceph:{root}/lib/x86_64-linux-gnu",
            PYTHONPATH=f"{root}/usr/lib/python3/dist-packages",
            CEPH_CONF=str(workdir / "ceph.conf"),
        )

    def _left(self, what: str, logs: list[Path]) -> float:
        """Seconds left of the startup budget; raises with the logs' tails once it is spent."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.fail(f"timed out after {STARTUP_TIMEOUT_S:.0f} s {what}", logs)
        return left

    def fail(self, message: str, logs: list[Path]) -> NoReturn:
        """Raises RuntimeError with the message and the tails of the logs that explain it."""
        raise RuntimeError("\n".join([f"S3 server startup: {message}", *map(_tail, logs)]))

    def ceph_cli(self, *args: str) -> list[str]:
        """The `ceph` CLI: Python built for Debian's python3, not the interpreter running tests."""
        return ["/usr/bin/python3", str(self.root / "usr/bin/ceph"), *args]

    def run(self, label: str, argv: list[str], attempts: int = 1) -> str:
        """Runs a command to completion, up to `attempts` times until it succeeds; gives its stdout.

        Every attempt's output is appended to workdir/label.out.
        """
        out = self.workdir / f"{label}.out"
        logs = [out, self.workdir / "client.admin.log", self.workdir / "mon.a.log"]
        for attempt in range(1, attempts + 1):
            try:
                done = subprocess.run(
                    argv,
                    env=self.env,
                    cwd=self.workdir,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=self._left(f"before {label}", logs),
                )
            except subprocess.TimeoutExpired as expired:
                with out.open("ab") as log:
                    log.write((expired.stdout or b"") + (expired.stderr or b""))
                self.fail(f"timed out after {STARTUP_TIMEOUT_S:.0f} s in {label}", logs)
            with out.open("ab") as log:
                log.write(done.stdout + done.stderr)
            if done.returncode == 0:
                return done.stdout.decode()
            if attempt < attempts:
                time.sleep(POLL_S)
        self.fail(f"{label} exited with {done.returncode} ({attempts} attempts): {argv}", logs)

    def _spawn(self, argv: list[str], out: IO[bytes]) -> subprocess.Popen[bytes]:
        """Starts a process in the background with stdout and stderr into `out`."""
        return subprocess.Popen(
            argv,
            env=self.env,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def start(self, name: str, argv: list[str]) -> None:
        """Starts a daemon (its argv keeps it in the foreground, so it stays our child process).

        Its stdout and stderr, over every start, go to workdir/name.out.
        """
        out = (self.workdir / f"{name}.out").open("ab")
        self.daemons.append(_Daemon(argv, out, self._spawn(argv, out)))

    def wait_for(self, what: str, ready: Callable[[], bool], logs: list[Path]) -> None:
        """Polls `ready` until it holds, restarting daemons that exit; raises when time is up."""
        while not ready():
            for daemon in self.daemons:
                if daemon.process.poll() is None:
                    continue
                if daemon.starts >= DAEMON_STARTS:
                    died = f"{daemon.argv[0]} exited with {daemon.process.returncode}"
                    self.fail(f"{died} ({daemon.starts} starts)", [Path(daemon.out.name), *logs])
                daemon.process = self._spawn(daemon.argv, daemon.out)
                daemon.starts += 1
            self._left(f"waiting for {what}", logs)
            time.sleep(POLL_S)

    def stop(self) -> None:
        """Stops the daemons newest first (gateway, OSD, monitor): SIGTERM, then SIGKILL."""
        for daemon in reversed(self.daemons):
            if daemon.process.poll() is None:
                daemon.process.send_signal(signal.SIGTERM)
                try:
                    daemon.process.wait(timeout=STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    daemon.process.kill()
                    daemon.process.wait()
            daemon.out.close()


def _answers_http(port: int) -> bool:
    """Whether anything on the port answers an HTTP request (any status will do)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/")
        connection.getresponse().read()
        return True
    except OSError:
        return False
    finally:
        connection.close()


def _osd_up(cluster: _Cluster) -> bool:
    """Whether the monitor reports the one OSD up."""
    stat = cluster.run("ceph-osd-stat", cluster.ceph_cli("osd", "stat"), CLIENT_ATTEMPTS)
    return re.search(r"\b1 up\b", stat) is not None


def _start(cluster: _Cluster, fsid: str, mon_port: int, s3_port: int) -> S3Server:
    """Brings the cluster up step by step (monitor, OSD, gateway) and makes a user with new keys."""
    workdir = cluster.workdir
    tool = cluster.root / "usr/bin"
    monmap = str(workdir / "monmap")
    address = f"[v1:127.0.0.1:{mon_port}]"
    create = ["--create", "--fsid", fsid, "--addv", "a", address, monmap]
    cluster.run("monmaptool", [f"{tool}/monmaptool", *create])
    cluster.run("ceph-mon-mkfs", [f"{tool}/ceph-mon", "--mkfs", "-i", "a", "--monmap", monmap])
    cluster.start("mon.a", [f"{tool}/ceph-mon", "-i", "a", "-f"])

    osd_uuid = str(uuid.uuid4())
    osd_new = cluster.ceph_cli("osd", "new", osd_uuid)  # the same id again when retried
    osd_id = cluster.run("ceph-osd-new", osd_new, CLIENT_ATTEMPTS).strip()
    (workdir / f"osd.{osd_id}").mkdir()  # memstore's mkfs writes its fsid file there
    mkfs = ["-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid]
    cluster.run("ceph-osd-mkfs", [f"{tool}/ceph-osd", *mkfs])
    cluster.start(f"osd.{osd_id}", [f"{tool}/ceph-osd", "-i", osd_id, "-f"])
    osd_logs = [workdir / f"osd.{osd_id}.log", workdir / "mon.a.log"]
    cluster.wait_for("the OSD to be up", lambda: _osd_up(cluster), osd_logs)

    cluster.start("client.rgw.a", [f"{tool}/radosgw", "-n", "client.rgw.a", "-f"])
    rgw_logs = [workdir / "client.rgw.a.log"]
    cluster.wait_for(f"the gateway on port {s3_port}", lambda: _answers_http(s3_port), rgw_logs)

    access_key = "".join(secrets.choice(KEY_ALPHABET) for _ in range(20))
    secret_key = secrets.token_urlsafe(30)
    user = ["--uid=test", "--display-name=test", f"--access-key={access_key}"]
    create_user = [f"{tool}/radosgw-admin", "user", "create", *user, f"--secret-key={secret_key}"]
    cluster.run("radosgw-admin-user-create", create_user, CLIENT_ATTEMPTS)
    return S3Server(f"127.0.0.1:{s3_port}", access_key, secret_key)


@contextmanager
def running_s3_server(ceph_root: Path, workdir: Path) -> Iterator[S3Server]:
    """Starts a fresh S3 server from the Ceph tree `ceph_root` (see tests/tools/fetch-ceph.sh).

    Its data and every log go into `workdir`, which should be new and empty. Yields the endpoint
    and a user's keys; on the way out stops every daemon it started, even when startup failed.
    """
    root = ceph_root.resolve()
    if not (root / "usr/bin/radosgw").is_file():
        fetch = f"bash tests/tools/fetch-ceph.sh {ceph_root}"
        raise RuntimeError(f"no Ceph in {root}: `{fetch}` unpacks it")
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    fsid = str(uuid.uuid4())
    mon_port, s3_port = _free_ports(2)
    (workdir / "ceph.conf").write_text(_ceph_conf(root, workdir, fsid, mon_port, s3_port))
    cluster = _Cluster(root, workdir)
    try:
        yield _start(cluster, fsid, mon_port, s3_port)
    finally:
        cluster.stop()
