"""A real Prometheus server on loopback for tests, from Debian's prometheus package (`make tools`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import yaml

from flowline.inference_services.local_server import LOOPBACK, free_port, running_process

SCRAPE_INTERVAL = "1s"


@contextmanager
def running_prometheus(binary: str, targets: Sequence[str], folder: Path) -> Iterator[str]:
    """Prometheus scraping `targets` ("host:port", /metrics) every second; yields its base URL."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [{"job_name": "flowline", "static_configs": [{"targets": list(targets)}]}],
    }))
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    command = [binary, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
               f"--web.listen-address={LOOPBACK}:{port}"]
    with running_process(command, f"{url}/-/ready", str(folder / "prometheus.log"), ready_timeout=60):
        yield url
