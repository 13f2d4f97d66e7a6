"""Start and stop a live medxfer MONAI Label server as a subprocess (for tests, benchmarks and scripts).

Example:
    >>> with running_server("studies", workspace="ws") as server:  # doctest: +SKIP
    ...     httpx.get(server.url + "/info/").json()["models"]
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from common.errors import OutputError

__all__ = ["LiveServer", "free_port", "running_server"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    """A started server: its URL, process and log file."""

    url: str
    process: subprocess.Popen
    log: Path

    def log_text(self) -> str:
        """Everything the server printed so far."""
        return self.log.read_text(errors="replace") if self.log.is_file() else ""


@contextlib.contextmanager
def running_server(studies: str | os.PathLike, *, workspace: str | os.PathLike | None = None, models: str = "all",
                   extra: Sequence[str] = (), log: str | os.PathLike | None = None, timeout: float = 180.0,
                   env: dict[str, str] | None = None) -> Iterator[LiveServer]:
    """Run ``python -m common.label serve`` on a free port until the block ends.

    Args:
        studies: the studies folder.
        workspace: the app's workspace (``--workspace``).
        models: bundles to serve.
        extra: more ``serve`` arguments.
        log: file for the server's output (default ``<studies>/../label_server.log``).
        timeout: seconds to wait for ``/info/`` to answer.
        env: extra environment variables.

    Raises:
        OutputError: the server exited or did not answer in time (the message ends with its last log lines).
    """
    port = free_port()
    log_path = Path(log) if log is not None else Path(studies).resolve().parent / "label_server.log"
    cmd = [sys.executable, "-m", "common.label", "serve", "--studies", str(studies), "--port", str(port),
           "--models", models, *extra]
    if workspace is not None:
        cmd += ["--workspace", str(workspace)]
    with open(log_path, "w") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                   start_new_session=True)
    server = LiveServer(f"http://127.0.0.1:{port}", process, log_path)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise OutputError(f"MONAI Label server exited with status {process.returncode}; log {log_path}:\n"
                                  + "\n".join(server.log_text().splitlines()[-15:]))
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(server.url + "/info/", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise OutputError(f"MONAI Label server did not answer within {timeout:.0f} s; log {log_path}:\n"
                                  + "\n".join(server.log_text().splitlines()[-15:]))
            time.sleep(0.5)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
