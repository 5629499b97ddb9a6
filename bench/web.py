"""The benchmarks' HTTP side: gunicorn as the Procfile runs it, and the load generator."""

from __future__ import annotations

import json
import resource
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from bench.workers import LOG_DIR, ROOT

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Gunicorn:
    """`gunicorn shopflow.wsgi:application` (the Procfile's `web`) with its log under var/bench/."""

    def __init__(self, env: dict[str, str], *, workers: int, threads: int, name: str = "web"):
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = LOG_DIR / f"{name}.log"
        cmd = [
            sys.executable, "-m", "gunicorn", "shopflow.wsgi:application",
            "--bind", f"{HOST}:{self.port}", "--workers", str(workers), "--threads", str(threads),
            "--access-logfile", "-",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        """Until /healthz answers (every worker imported Django by then, give or take)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited early\n{self.log.read_text()[-3000:]}")
            try:
                with socket.create_connection((HOST, self.port), timeout=1) as sock:
                    sock.sendall(
                        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                    )
                    if sock.recv(64).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn not ready after {timeout}s\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """Graceful stop (SIGTERM lets workers finish their requests), then SIGKILL."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    statuses: dict[str, int]
    latencies_ms: list[float]  # sorted
    error_count: int
    errors: list[str]
    started_at: float
    dropped: int  # open loop: not sent, the server being too far behind
    cpu_seconds: float  # the load generator's own

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def ok(self, status: int) -> int:
        return self.statuses.get(str(status), 0)


def load_run(port: int, path: str, tokens: list[str], bodies: list[dict], *, duration: float,
             connections: int, rate: float | None = None) -> LoadResult:  # fmt: skip
    """Run the load generator in its own process against 127.0.0.1:`port` and read its figures."""
    spec = {
        "host": HOST, "port": port, "path": path, "tokens": tokens, "bodies": bodies,
        "duration": duration, "connections": connections, "rate": rate,
    }  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, "-m", "bench.loadgen"],
        cwd=ROOT, input=json.dumps(spec), capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{done.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    raw = json.loads(done.stdout)
    latencies = sorted(raw["latencies_ms"])
    return LoadResult(
        requests=len(latencies),
        seconds=raw["seconds"],
        statuses=raw["statuses"],
        latencies_ms=latencies,
        error_count=raw["error_count"],
        errors=raw["errors"],
        started_at=raw["started_at"],
        dropped=raw["dropped"],
        cpu_seconds=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
    )
