"""Network helpers of the test-suite, without heavy imports (conftest.py uses them before transformers loads)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, so that concurrent test runs (pytest-xdist workers,
    two suites on one machine) never share one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
