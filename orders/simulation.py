"""A demo load through the real HTTP API: what `manage.py simulate_orders` runs.

A customer places orders at a steady rate with a mix of the sandbox behaviours
(CONTRACT §3), cancels a share of them shortly after, and follows every order
until its saga settles. Only the standard library is used, so the command runs
from the runtime requirements alone.
"""

from __future__ import annotations

import http.client
import json
import math
import random
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Scenario:
    """What a mix key's orders pay with, where they ship, and whether they are cancelled."""

    payment_token: str = "tok_visa"
    country: str = "US"
    cancel: bool = False


SCENARIOS = {
    "visa": Scenario(),
    "declined": Scenario(payment_token="tok_chargeDeclined"),
    "flaky": Scenario(payment_token="tok_flaky"),
    "down": Scenario(payment_token="tok_down"),
    "aq": Scenario(country="AQ"),
    "cancel": Scenario(cancel=True),
}
DEFAULT_MIX = "visa=80,declined=5,flaky=5,down=2,aq=3,cancel=5"
# The saga is over in these states; shipped and delivered come later, from the carrier.
SETTLED = frozenset({"confirmed", "failed", "cancelled", "shipped", "delivered"})
CANCEL_REASON = "simulate_orders"
# Seconds after placement within which the cancel share is cancelled, spread evenly so
# some orders are cancelled while their saga runs and some after it confirmed them.
CANCEL_WITHIN = 1.0
# Seconds between two looks at the orders still in flight.
POLL_INTERVAL = 0.5
# How often a throttled (429) request is tried before it counts as an error.
THROTTLE_RETRIES = 5


class InvalidMix(ValueError):
    """The --mix text is not `key=percent,...` over known keys adding up to 100."""


class ApiUnreachable(Exception):
    """The server did not answer with HTTP (refused, timed out, reset)."""


def mix_parse(text: str) -> dict[str, int]:
    """`visa=80,declined=20` as {"visa": 80, "declined": 20}; raises `InvalidMix`."""
    mix: dict[str, int] = {}
    for part in text.split(","):
        key, _, value = (piece.strip() for piece in part.partition("="))
        if not re.fullmatch(r"[0-9]+", value):
            raise InvalidMix(f"--mix entries look like key=percent, not {part.strip()!r}")
        if key not in SCENARIOS:
            raise InvalidMix(f"unknown --mix key {key!r} (known: {', '.join(SCENARIOS)})")
        if key in mix:
            raise InvalidMix(f"--mix names {key!r} twice")
        mix[key] = int(value)
    if sum(mix.values()) != 100:
        raise InvalidMix(f"--mix percentages add up to {sum(mix.values())}, not 100")
    return mix


def mix_allocate(mix: Mapping[str, int], count: int, rng: random.Random) -> list[str]:
    """`count` mix keys in the mix's proportions (largest remainder), shuffled."""
    exact = {key: count * share / 100 for key, share in mix.items()}
    counts = {key: math.floor(value) for key, value in exact.items()}
    by_remainder = sorted(exact, key=lambda key: exact[key] - counts[key], reverse=True)
    for key in by_remainder[: count - sum(counts.values())]:
        counts[key] += 1
    keys = [key for key, times in counts.items() for _ in range(times)]
    rng.shuffle(keys)
    return keys


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    headers: Mapping[str, str]


class ShopClient:
    """A small JSON client of the ShopFlow API (token auth, throttling retried)."""

    def __init__(self, base_url: str, *, token: str = "", timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def call(
        self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None
    ) -> Reply:
        """Send one request; a 429 is retried after its Retry-After."""
        for _ in range(THROTTLE_RETRIES):
            reply = self._send(method, path, body, dict(headers or {}))
            if reply.status != 429:
                return reply
            time.sleep(float(reply.headers.get("Retry-After") or 1))
        return reply

    def _send(self, method: str, path: str, body: Any, headers: dict[str, str]) -> Reply:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json", "Content-Type": "application/json", **headers}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        request = urllib.request.Request(self.base_url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return Reply(response.status, _json(response.read()), response.headers)
        except urllib.error.HTTPError as exc:
            with exc:
                return Reply(exc.code, _json(exc.read()), exc.headers)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ApiUnreachable(f"{self.base_url} does not answer ({reason})") from exc

    def pages(self, path: str) -> list[dict[str, Any]]:
        """Every result of a paginated list, page by page."""
        results: list[dict[str, Any]] = []
        separator = "&" if "?" in path else "?"
        for page in range(1, 10_000):
            reply = self.call("GET", f"{path}{separator}page={page}")
            if reply.status != 200:
                raise ApiUnreachable(f"GET {path} answered {reply.status}: {reply_detail(reply)}")
            results += reply.body["results"]
            if not reply.body.get("next"):
                break
        return results


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")[:200]


def reply_detail(reply: Reply) -> str:
    """The one-line reason an error reply gives."""
    body = reply.body
    if isinstance(body, dict):
        body = body.get("detail") or body.get("non_field_errors") or body
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    return " ".join(str(body).split())


@dataclass
class Tracked:
    """An order the simulation placed, until its saga settles."""

    scenario: str
    order_id: str
    ready: bool  # False while its cancel is still to be sent
    final: dict[str, Any] | None = None


@dataclass
class Summary:
    """What came of a simulation: outcomes, saga durations and throughput."""

    url: str
    planned: int
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    # The first answer behind each kind of rejection, to say why.
    rejections: dict[str, str] = field(default_factory=dict)
    durations: list[float] = field(default_factory=list)
    placing_seconds: float = 0.0
    window_seconds: float = 0.0
    interrupted: bool = False

    @property
    def placed(self) -> int:
        return sum(n for (status, _), n in self.outcomes.items() if status != "rejected")

    @property
    def settled(self) -> int:
        return len(self.durations)

    @property
    def unsettled(self) -> int:
        return self.outcomes[("pending", "not settled")]

    def lines(self) -> list[str]:
        """The summary as a table, ready to print."""
        rate = self.placed / self.placing_seconds if self.placing_seconds else 0.0
        lines = [
            f"placed {self.placed} of {self.planned} orders in {self.placing_seconds:.1f} s "
            f"({rate:.1f}/s) at {self.url}",
            "",
            f"{'status':<11}{'reason':<22}{'orders':>6}",
        ]
        for (status, reason), count in sorted(self.outcomes.items(), key=_row_order):
            lines.append(f"{status:<11}{reason or '-':<22}{count:>6}")
        lines.append("")
        lines += [f"rejected ({reason}): {detail}" for reason, detail in self.rejections.items()]
        if self.durations:
            p50, p99 = percentile(self.durations, 50), percentile(self.durations, 99)
            lines.append(
                f"saga duration (placed -> settled): p50 {p50:.2f} s, p99 {p99:.2f} s, "
                f"max {max(self.durations):.2f} s"
            )
            per_second = self.settled / self.window_seconds if self.window_seconds else 0.0
            lines.append(
                f"throughput: {per_second:.1f} orders/s settled "
                f"({self.settled} between the first placement and the last settlement, "
                f"{self.window_seconds:.1f} s)"
            )
        return lines


STATUS_ORDER = ["confirmed", "shipped", "delivered", "cancelled", "failed", "pending", "rejected"]


def _row_order(item: tuple[tuple[str, str], int]) -> tuple[int, str]:
    (status, reason), _ = item
    rank = STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER)
    return rank, reason


def percentile(values: list[float], pct: float) -> float:
    """The nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


ADDRESS = {"name": "Simulated Customer", "line1": "1 Main St", "city": "Springfield",
           "postal_code": "12345", "country": "US"}  # fmt: skip


@dataclass(frozen=True)
class PlannedOrder:
    scenario: str
    body: dict[str, Any]
    cancel_after: float | None  # seconds after placement, for the cancel share


def orders_plan(
    mix: Mapping[str, int], count: int, stock: Mapping[str, int], rng: random.Random
) -> list[PlannedOrder]:
    """The orders to place: scenarios in the mix's proportions, one or two catalog lines each.

    `stock` maps each SKU for sale to its available quantity; SKUs are drawn in
    proportion to it, so a long run rarely empties the scarce ones first.
    """
    return [_order_planned(key, stock, rng) for key in mix_allocate(mix, count, rng)]


def _order_planned(key: str, stock: Mapping[str, int], rng: random.Random) -> PlannedOrder:
    scenario = SCENARIOS[key]
    body = {
        "items": [{"sku": sku, "quantity": rng.randint(1, 2)} for sku in _skus_drawn(stock, rng)],
        "payment_token": scenario.payment_token,
        "shipping_address": {**ADDRESS, "country": scenario.country},
    }
    return PlannedOrder(key, body, rng.uniform(0, CANCEL_WITHIN) if scenario.cancel else None)


def _skus_drawn(stock: Mapping[str, int], rng: random.Random) -> list[str]:
    """One or two distinct SKUs, each drawn in proportion to its available stock."""
    left = dict(stock)
    drawn: list[str] = []
    for _ in range(min(len(left), rng.choice((1, 1, 2)))):
        sku = rng.choices(list(left), weights=list(left.values()))[0]
        drawn.append(sku)
        del left[sku]
    return drawn


class Simulation:
    """Places the planned orders at `rate` per second and follows them until they settle.

    Placements run on a thread pool paced by the calling thread; one poller thread
    lists the customer's pending orders and reads each order that left that list.
    """

    def __init__(
        self,
        client: ShopClient,
        orders: list[PlannedOrder],
        *,
        rate: float,
        progress: Callable[[int, int], None] = lambda settled, placed: None,
    ) -> None:
        self.client = client
        self.orders = orders
        self.rate = rate
        self.progress = progress
        self.summary = Summary(url=client.base_url, planned=len(orders))
        self.tracked: dict[str, Tracked] = {}
        self.settled = 0
        self.started = self.last_placed = 0.0
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    def run(self, *, timeout: float) -> Summary:
        """Place every order, then wait up to `timeout` seconds for the rest to settle."""
        poller = threading.Thread(target=self._poll_until_stopped, name="simulate-poll")
        poller.start()
        try:
            self._place_all()
            self._wait_settled(timeout)
        except KeyboardInterrupt:
            self.summary.interrupted = True
        finally:
            self.stopped.set()
            poller.join()
        return self._finish()

    def _place_all(self) -> None:
        # Enough threads for the placements in flight and the cancels waiting their turn.
        workers = min(64, 4 + math.ceil(self.rate * (CANCEL_WITHIN + 0.5)))
        executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="simulate")
        self.started = self.last_placed = time.monotonic()
        try:
            futures = []
            for index, planned in enumerate(self.orders):
                time.sleep(max(0.0, self.started + index / self.rate - time.monotonic()))
                futures.append(executor.submit(self._place, planned))
        except BaseException:
            executor.shutdown(wait=True, cancel_futures=True)
            raise
        executor.shutdown(wait=True)
        for future in futures:
            future.result()  # a bug in a placement thread must not pass silently

    def _place(self, planned: PlannedOrder) -> None:
        key = {"Idempotency-Key": str(uuid.uuid4())}
        try:
            reply = self.client.call("POST", "/api/orders/", planned.body, key)
        except ApiUnreachable as exc:
            return self._reject("no answer", str(exc))
        if reply.status != 201:
            return self._reject(f"HTTP {reply.status}", reply_detail(reply))
        tracked = Tracked(planned.scenario, reply.body["id"], ready=planned.cancel_after is None)
        with self.lock:
            self.tracked[tracked.order_id] = tracked
            self.last_placed = time.monotonic()
            self._report()
        if planned.cancel_after is not None:
            time.sleep(planned.cancel_after)
            self._cancel(tracked)

    def _reject(self, reason: str, detail: str) -> None:
        with self.lock:
            self.summary.outcomes[("rejected", reason)] += 1
            self.summary.rejections.setdefault(reason, detail)

    def _cancel(self, tracked: Tracked) -> None:
        path = f"/api/orders/{tracked.order_id}/cancel/"
        try:
            reply = self.client.call("POST", path, {"reason": CANCEL_REASON})
        except ApiUnreachable:
            reply = None
        with self.lock:
            tracked.ready = True  # a refused cancel (409: it failed first) is read by the poller
            if reply is not None and reply.status in (200, 202):
                self._settle(tracked, reply.body)

    def _settle(self, tracked: Tracked, order: dict[str, Any]) -> None:
        if tracked.final is None:
            tracked.final = order
            self.settled += 1
            self._report()

    def _report(self) -> None:
        self.progress(self.settled, len(self.tracked))

    def _poll_until_stopped(self) -> None:
        while not self.stopped.wait(POLL_INTERVAL):
            try:
                self._poll()
            except ApiUnreachable:
                continue  # the server may come back; the deadline decides

    def _poll(self) -> None:
        with self.lock:
            waiting = [t for t in self.tracked.values() if t.ready and t.final is None]
        if not waiting:
            return
        # Listed before the reads: an order missing from it has left `pending` for good.
        pending = {order["id"] for order in self.client.pages("/api/orders/?status=pending")}
        for tracked in waiting:
            if tracked.order_id in pending or self.stopped.is_set():
                continue
            reply = self.client.call("GET", f"/api/orders/{tracked.order_id}/")
            if reply.status == 200 and reply.body["status"] in SETTLED:
                with self.lock:
                    self._settle(tracked, reply.body)

    def _wait_settled(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.settled == len(self.tracked):
                    return
            time.sleep(0.05)

    def _finish(self) -> Summary:
        summary = self.summary
        summary.placing_seconds = self.last_placed - self.started
        with self.lock:
            finals = [t.final for t in self.tracked.values() if t.final is not None]
            summary.outcomes[("pending", "not settled")] += len(self.tracked) - len(finals)
        summary.outcomes = +summary.outcomes  # drop the zero "not settled" row
        for order in finals:
            reason = order["failure_reason"] or order["cancel_reason"]
            summary.outcomes[(order["status"], reason)] += 1
            created, updated = _moment(order["created_at"]), _moment(order["updated_at"])
            summary.durations.append((updated - created).total_seconds())
        if finals:
            first = min(_moment(order["created_at"]) for order in finals)
            last = max(_moment(order["updated_at"]) for order in finals)
            summary.window_seconds = (last - first).total_seconds()
        return summary
