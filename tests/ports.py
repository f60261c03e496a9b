"""Free TCP ports for the servers tests start, which never collide across xdist workers.

A port from `bind(0)` comes from the kernel's ephemeral range and is free only at the
moment it is picked; a server binds it seconds later, and by then another worker may
have been handed the same port (a run once had an orchestrator fail to bind while the
test's readiness check was answered by another test's server on that port). Each xdist
worker takes ports in turn from its own block below the ephemeral range instead, which
outgoing connections never use, skipping any port something already holds.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
import threading

_FIRST = 20_000
_BLOCK = 1_000
_BLOCKS = 12  # 20,000-31,999: below Linux's ephemeral range (32,768-60,999)

_lock = threading.Lock()
_turns = itertools.count(random.randrange(_BLOCK))  # another pytest session starts elsewhere


def _block_start() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw3", or unset without xdist
    index = int(worker[2:]) + 1 if worker.startswith("gw") else 0
    return _FIRST + (index % _BLOCKS) * _BLOCK


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A local port in this worker's block that nothing listens on right now."""
    start = _block_start()
    with _lock:
        for _ in range(_BLOCK):
            port = start + next(_turns) % _BLOCK
            if _bindable(port):
                return port
    raise RuntimeError(f"no free port in {start}-{start + _BLOCK - 1}")
