"""Session setup for the test-suite.

Local Hub: no machine of this project reaches huggingface.co, so the push/pull tests talk to a
small Hub-API server on 127.0.0.1 (`tests/hub_server.py`). `huggingface_hub` reads `HF_ENDPOINT`
(and transformers its cache paths) when it is imported, so `pytest_configure` sets the client's
environment before any test module is imported; the `hub_server` fixture then starts the server
once per session on the port chosen here. Subprocesses started by tests inherit the environment.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.network import free_port

if TYPE_CHECKING:
    from tests.hub_server import HubServer

# ---- local Hub --------------------------------------------------------------------------------

_HUB_PORT: int | None = None
_HF_HOME: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Point huggingface_hub/transformers at the local Hub and a throw-away cache."""
    global _HUB_PORT, _HF_HOME
    if "huggingface_hub" in sys.modules:
        # Too late to redirect the client: its endpoint constant is already fixed.
        config.issue_config_time_warning(
            pytest.PytestConfigWarning("huggingface_hub was imported before tests/conftest.py; Hub tests may fail"),
            stacklevel=2,
        )
    _HUB_PORT = free_port()
    _HF_HOME = tempfile.mkdtemp(prefix="hf-home-tests-")
    os.environ.update(
        {
            "HF_ENDPOINT": f"http://127.0.0.1:{_HUB_PORT}",
            "HF_HOME": _HF_HOME,
            "HF_TOKEN": "hf_local_test_token",
            "HF_HUB_DISABLE_XET": "1",  # plain Git LFS: the local Hub does not implement Xet
            "HF_HUB_OFFLINE": "0",
            "TRANSFORMERS_OFFLINE": "0",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_HUB_DISABLE_IMPLICIT_TOKEN": "0",
        }
    )
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_MODULES_CACHE", "HF_TOKEN_PATH", "HF_ASSETS_CACHE"):
        os.environ.pop(name, None)  # derive every cache path from the temporary HF_HOME
    _share_the_cores_between_workers()


def _share_the_cores_between_workers() -> None:
    """`make test` runs the suite in parallel (`pytest -n auto`, pytest-xdist: one worker per core). Each worker
    then gets its share of the cores for torch's threads, and so do the subprocesses its tests start
    (`OMP_NUM_THREADS`), instead of every worker running as many threads as the machine has cores."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = int(os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores // workers))))

    import torch

    torch.set_num_threads(threads)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _HF_HOME is not None:
        shutil.rmtree(_HF_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def hub_server() -> Iterator[HubServer]:
    """The local Hub (a started `hub_server.HubServer`), shared by the whole session."""
    import huggingface_hub.constants

    from tests.hub_server import HubServer

    server = HubServer(port=_HUB_PORT or 0).start()
    try:
        if huggingface_hub.constants.ENDPOINT != server.url:
            pytest.fail(
                f"huggingface_hub points at {huggingface_hub.constants.ENDPOINT}, not the local Hub {server.url}: "
                "it was imported before tests/conftest.py set HF_ENDPOINT"
            )
        yield server
    finally:
        server.stop()


@pytest.fixture
def hub_repo_id(hub_server: HubServer) -> str:
    """A fresh, not yet created repo id on the local Hub."""
    return f"{hub_server.username}/test-{uuid.uuid4().hex[:10]}"
