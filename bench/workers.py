"""Real `celery worker` and `celery beat` subprocesses, set up as the Procfile runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = ROOT / "var" / "bench"


class CeleryProcess:
    """One celery subprocess whose output goes to a log file under var/bench/."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], ready: str) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log = LOG_DIR / f"{name}.log"
        cmd = [sys.executable, "-m", "celery", "-A", "shopflow", *args]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT
        )
        self._wait_for(ready)

    def _wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.log.name}: exited early\n{self.tail()}")
            time.sleep(0.1)
        raise RuntimeError(f"{self.log.name}: not ready after {timeout}s\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def worker_start(env: dict[str, str], concurrency: int = 2, name: str = "worker") -> CeleryProcess:
    """A prefork worker on every ShopFlow queue, as the Procfile's `worker`."""
    args = [
        "worker", "-Q", "outbox,events,saga,notifications", "--concurrency", str(concurrency),
        "--pool", "prefork", "--loglevel", "INFO",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
        "-n", f"bench-{os.getpid()}@%h",
    ]  # fmt: skip
    return CeleryProcess(name, args, env, ready="ready.")


def beat_start(env: dict[str, str], name: str = "beat") -> CeleryProcess:
    """Celery beat with the project's schedule (the relay's polling safety net)."""
    schedule = Path(tempfile.mkdtemp(prefix="shopflow-bench-")) / "celerybeat-schedule"
    args = ["beat", "--loglevel", "INFO", "--schedule", str(schedule)]
    return CeleryProcess(name, args, env, ready="beat: Starting")
