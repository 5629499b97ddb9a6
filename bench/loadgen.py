"""A small HTTP/1.1 load generator, run as its own process: `python -m bench.loadgen`.

Reads one JSON spec on stdin, prints one JSON result on stdout. Pure asyncio on
raw keep-alive sockets with pre-rendered requests, so it costs the two shared
cores as little as possible (httpx spends several times more CPU per request).

Spec: {"host", "port", "path", "tokens": [...], "bodies": [...], "duration",
"connections", and "rate" (requests/s, open loop: Poisson arrivals, so no
arrival rhythm can fall in step with a periodic task such as beat's relay poll)
or none (closed loop: every connection sends its next request as soon as the
last one is answered)}.
Each request uses the next token and body round-robin and a fresh
Idempotency-Key, and says `X-Forwarded-Proto: https` as the TLS-terminating
proxy in front of production's web process does (else DEBUG=false redirects).
Open-loop latency counts from the request's scheduled time, so a server that
falls behind is not flattered (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import sys
import time
import uuid
from dataclasses import dataclass, field


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    first_sent: float = 0.0
    last_done: float = 0.0
    dropped: int = 0  # open loop: still waiting for a free connection when time was up

    def count(self, status: int, latency_ms: float) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.latencies_ms.append(latency_ms)


class Requests:
    """Pre-rendered POSTs, one token and body after another, each with a new key."""

    def __init__(self, spec: dict) -> None:
        host = f"{spec['host']}:{spec['port']}"
        self.heads = [
            f"POST {spec['path']} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Token {token}\r\n"
            f"Content-Type: application/json\r\nAccept: application/json\r\n"
            f"X-Forwarded-Proto: https\r\n"
            for token in spec["tokens"]
        ]
        self.bodies = [json.dumps(body).encode() for body in spec["bodies"]]
        self.turn = itertools.count()

    def next(self) -> bytes:
        n = next(self.turn)
        body = self.bodies[n % len(self.bodies)]
        head = self.heads[n % len(self.heads)]
        return (
            f"{head}Idempotency-Key: {uuid.uuid4()}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, request: bytes) -> int:
        """Send one request, read its response; returns the status code.

        A kept-alive connection the server closed while idle (gunicorn's keepalive
        timeout) fails before any byte of response: reconnect and send again once.
        """
        if self.writer is None:
            return await self._exchange(request)
        try:
            return await self._exchange(request)
        except (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError) as exc:
            if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                raise
            self.close()
            return await self._exchange(request)

    async def _exchange(self, request: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)
        }
        await self.reader.readexactly(int(headers.get("content-length", 0)))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _one(conn: Connection, request: bytes, tally: Tally, since: float) -> None:
    try:
        status = await conn.send(request)
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        conn.close()
        tally.errors.append(f"{type(exc).__name__}: {exc}"[:200])
        return
    now = time.perf_counter()
    tally.last_done = now
    tally.count(status, (now - since) * 1000)


async def closed_loop(spec: dict, requests: Requests, tally: Tally) -> None:
    deadline = time.perf_counter() + spec["duration"]

    async def client() -> None:
        conn = Connection(spec["host"], spec["port"])
        while time.perf_counter() < deadline:
            await _one(conn, requests.next(), tally, time.perf_counter())
        conn.close()

    tally.first_sent = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(spec["connections"])))


async def open_loop(spec: dict, requests: Requests, tally: Tally) -> None:
    """Send at a steady mean rate over a pool of connections; a late request waits for one.

    A request still waiting for a connection when the duration is over is
    dropped (counted): a server that falls behind ends the run on time.
    """
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(spec["connections"]):
        idle.put_nowait(Connection(spec["host"], spec["port"]))
    started = tally.first_sent = time.perf_counter()
    deadline = started + spec["duration"]
    arrivals = random.Random(0)  # the same arrival times in every run and phase

    async def fire(scheduled: float) -> None:
        conn = await idle.get()
        if time.perf_counter() > deadline:
            tally.dropped += 1
            idle.put_nowait(conn)
            return
        try:
            await _one(conn, requests.next(), tally, scheduled)
        finally:
            idle.put_nowait(conn)

    pending = set()
    scheduled = started
    while (scheduled := scheduled + arrivals.expovariate(spec["rate"])) < deadline:
        pause = scheduled - time.perf_counter()
        if pause > 0:
            await asyncio.sleep(pause)
        task = asyncio.create_task(fire(scheduled))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)


def main() -> None:
    spec = json.load(sys.stdin)
    requests, tally = Requests(spec), Tally()
    run = open_loop if spec.get("rate") else closed_loop
    began = time.time()
    asyncio.run(run(spec, requests, tally))
    json.dump(
        {
            "started_at": began,
            "seconds": tally.last_done - tally.first_sent,
            "statuses": tally.statuses,
            "latencies_ms": tally.latencies_ms,
            "errors": tally.errors[:20],
            "error_count": len(tally.errors),
            "dropped": tally.dropped,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
