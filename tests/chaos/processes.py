"""The web process as the Procfile runs it, for tests that talk to ShopFlow over HTTP."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT

HOST = "127.0.0.1"


def procfile_command(kind: str) -> list[str]:
    """The Procfile's line for `kind` (web, worker, beat), run by a shell as honcho runs it."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if not line.lstrip().startswith("#") and name.strip() == kind:
            return ["/bin/sh", "-c", command.strip()]
    raise LookupError(f"the Procfile has no {kind!r} process")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class WebProcess:
    """The Procfile's `web` (gunicorn) on a free port, with the venv's binaries; logs to var/."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.log = ROOT / "var" / f"test-web-{os.getpid()}-{time.monotonic_ns()}.log"
        self.log.parent.mkdir(exist_ok=True)
        venv_bin = str(Path(sys.executable).parent)
        env = {**env, "PORT": str(self.port), "PATH": f"{venv_bin}:{env.get('PATH', '')}"}
        self.proc = subprocess.Popen(
            procfile_command("web"),
            cwd=ROOT,
            env=env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the shell, gunicorn and its workers
        )

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def wait_ready(self, timeout: float = 60) -> None:
        """Block until GET /healthz answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited early:\n{self.log_tail()}")
            if self._healthy():
                return
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn not ready after {timeout}s:\n{self.log_tail()}")

    def _healthy(self) -> bool:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=5)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text()[-chars:]

    def kill(self) -> None:
        """SIGKILL gunicorn's master and its workers, for a test that is over."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
