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


CELERY = ("celery", "-A", "shopflow")


class CeleryProcess:
    """One celery (or other `python -m` program) subprocess, its output in var/bench/."""

    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        ready: str,
        program: tuple[str, ...] = CELERY,
    ) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log = LOG_DIR / f"{name}.log"
        cmd = [sys.executable, "-m", *program, *args]
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

    def cpu_seconds(self) -> float:
        """CPU time used so far by this process and its children (the prefork pool)."""
        pids = [self.proc.pid]
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        if children.exists():
            pids += [int(pid) for pid in children.read_text().split()]
        return sum(process_cpu_seconds(pid) for pid in pids)

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


def peer_worker_start(env: dict[str, str], concurrency: int = 2) -> CeleryProcess:
    """procrastinate's worker on the peer's queue, at INFO as ShopFlow's worker logs."""
    program = ("procrastinate", "--app", "bench.peer.app", "--log-level", "info")
    args = ["worker", "--concurrency", str(concurrency), "--name", f"bench-peer-{os.getpid()}"]
    return CeleryProcess("outbox-peer-worker", args, env, "Starting worker", program)


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of one process, from /proc (0 once it has exited)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
