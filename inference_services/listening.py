"""The server's listening socket, bound before anything loads: one line when it cannot be, for one process or
several workers' supervisor, which imports nothing else (it stays lean: see workers.py)."""

from __future__ import annotations

import socket
import sys
from typing import Optional

BACKLOG = 2048  # uvicorn's default


def listening(host: str, port: int) -> Optional[socket.socket]:
    """A socket listening on host:port, or None having said on stderr why there is none (the port taken, an
    address not of this machine): one line, where the server's own bind failed in a traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=BACKLOG)
    except OSError as error:
        print(f"flowline: cannot listen on {host}:{port}: {error}", file=sys.stderr)
        return None
