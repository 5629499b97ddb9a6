"""Customers placing (and cancelling) orders over HTTP, retrying until they get an answer.

A retry of a placement carries the same Idempotency-Key and body, as the
contract asks of a client that did not hear back, so a request that failed in a
fault window (connection refused, 5xx, 409 "still in flight") must end in
exactly one order.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.db import connection

from orders.simulation import mix_allocate


@dataclass(frozen=True)
class Scenario:
    """One kind of order in the mix (CONTRACT §3) and the outcome it must end in."""

    name: str
    share: int  # percent of the orders
    status: str  # expected final status
    reason: str = ""  # expected failure_reason
    token: str = "tok_visa"
    country: str = "US"
    cancel: bool = False


MIX = (
    Scenario("visa", 80, "confirmed"),
    Scenario("declined", 5, "failed", "payment_declined", token="tok_chargeDeclined"),
    Scenario("flaky", 5, "confirmed", token="tok_flaky"),
    Scenario("down", 2, "failed", "payment_unavailable", token="tok_down"),
    Scenario("aq", 3, "failed", "shipping_unavailable", country="AQ"),
    Scenario("cancel", 5, "cancelled", cancel=True),
)
# A cancellation goes out this many seconds after its order's 201, at most: some land
# while the saga runs, some after it confirmed the order.
CANCEL_WITHIN = 1.0
# How long a client keeps retrying one request before it counts as unanswered.
RETRY_BUDGET = 150.0
# Placement answers that mean "try again with the same key": in flight (409),
# throttled (429), or the server or a dependency is down.
RETRY_PLACE = frozenset({409, 429, 500, 502, 503, 504})
# For a cancellation 409 is an answer (the order failed first).
RETRY_CANCEL = RETRY_PLACE - {409}
REQUEST_TIMEOUT = 30.0


@dataclass(frozen=True)
class Customer:
    username: str
    token: str


@dataclass(frozen=True)
class PlannedOrder:
    index: int
    scenario: Scenario
    customer: Customer
    key: str  # the Idempotency-Key of every try
    body: dict[str, Any]
    cancel_after: float | None


@dataclass
class Placement:
    """What a client heard about one planned order."""

    planned: PlannedOrder
    answer: str = "no answer"  # "201" or what ended the tries
    order_ids: set[str] = field(default_factory=set)  # named by its 201s (more than one: bug)
    tries: int = 0
    replays: int = 0  # 201s marked Idempotent-Replayed
    cancel_answer: str = ""  # "202", "200", "409", "no answer"; empty when not cancelled
    answered_at: float = 0.0  # monotonic time of the first 201

    @property
    def order_id(self) -> str | None:
        return next(iter(self.order_ids), None) if len(self.order_ids) == 1 else None


def orders_plan(
    count: int, customers: list[Customer], skus: list[str], rng: random.Random
) -> list[PlannedOrder]:
    """`count` orders in the mix's proportions, shuffled, spread over the customers."""
    scenarios = _allocate(count, rng)
    return [
        _planned(i, s, customers[i % len(customers)], skus, rng) for i, s in enumerate(scenarios)
    ]


def _allocate(count: int, rng: random.Random) -> list[Scenario]:
    """`count` scenarios in the mix's proportions, as `simulate_orders` allocates them."""
    by_name = {s.name: s for s in MIX}
    return [by_name[name] for name in mix_allocate({s.name: s.share for s in MIX}, count, rng)]


def _planned(
    index: int, scenario: Scenario, customer: Customer, skus: list[str], rng: random.Random
) -> PlannedOrder:
    lines = rng.sample(skus, k=rng.choice((1, 1, 2)))
    body = {
        "items": [{"sku": sku, "quantity": rng.randint(1, 3)} for sku in lines],
        "payment_token": scenario.token,
        "shipping_address": {"name": "Chaos Customer", "line1": "1 Main St",
                             "city": "Springfield", "postal_code": "12345",
                             "country": scenario.country},
    }  # fmt: skip
    cancel_after = rng.uniform(0, CANCEL_WITHIN) if scenario.cancel else None
    return PlannedOrder(index, scenario, customer, str(uuid.uuid4()), body, cancel_after)


class Unanswered(Exception):
    """No HTTP answer: refused, reset, timed out."""


class LoadRun:
    """`threads` clients placing the planned orders, at most `rate` per second.

    Closed loop as well: no new order goes out while `window` or more placed
    orders are still unsettled (`unsettled()`, polled by a governor thread), so
    the offered load follows what the machine can fulfil instead of piling up a
    backlog that would only measure the queue. `unsettled()` returns None when it
    cannot tell (the database is down): the last known count stands.
    """

    def __init__(self, url: str, planned: list[PlannedOrder], *, threads: int, rate: float,
                 window: int, unsettled: Callable[[], int | None]) -> None:  # fmt: skip
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.placements = [Placement(p) for p in planned]
        self.threads = threads
        self.rate = rate
        self.window = window
        self.unsettled = unsettled
        self.backlog = 0
        self.next_index = self.finished = 0
        self.next_slot = 0.0
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.errors: list[BaseException] = []

    def run(self) -> list[Placement]:
        """Place every order (and send its cancellation); returns when all have an answer."""
        governor = threading.Thread(target=self._govern, name="chaos-governor")
        clients = [threading.Thread(target=self._client, name=f"chaos-client-{i}")
                   for i in range(self.threads)]  # fmt: skip
        governor.start()
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        self.done.set()
        governor.join()
        if self.errors:
            raise self.errors[0]
        return self.placements

    @property
    def progress(self) -> float:
        """The share of the planned orders whose placement is over (answered or given up)."""
        return self.finished / len(self.placements)

    def _govern(self) -> None:
        try:
            while not self.done.wait(0.25):
                count = self.unsettled()
                if count is not None:
                    self.backlog = count
        except BaseException as exc:
            self.errors.append(exc)
            self.backlog = 0  # let the clients finish; the error fails the test
        finally:
            connection.close()

    def _client(self) -> None:
        try:
            while (index := self._take()) is not None:
                self._wait_turn()
                self._place(self.placements[index])
                with self.lock:
                    self.finished += 1
        except BaseException as exc:  # a bug in the client must fail the test, not hide
            self.errors.append(exc)

    def _take(self) -> int | None:
        with self.lock:
            if self.next_index >= len(self.placements):
                return None
            self.next_index += 1
            return self.next_index - 1

    def _wait_turn(self) -> None:
        while self.backlog >= self.window:
            time.sleep(0.05)
        with self.lock:
            slot = max(self.next_slot, time.monotonic())
            self.next_slot = slot + 1 / self.rate
        time.sleep(max(0.0, slot - time.monotonic()))

    def _place(self, placement: Placement) -> None:
        planned = placement.planned
        headers = {"Idempotency-Key": planned.key}
        for status, body, replied in self._tries(planned.customer, "POST", "/api/orders/",
                                                 planned.body, headers, RETRY_PLACE):  # fmt: skip
            placement.tries += 1
            if status is None:
                placement.answer = "no answer"
                continue
            placement.answer = str(status)
            if status == 201:
                placement.order_ids.add(body["id"])
                placement.replays += replied.get("idempotent-replayed") == "true"
                placement.answered_at = placement.answered_at or time.monotonic()
        if placement.answer == "201" and planned.cancel_after is not None:
            time.sleep(planned.cancel_after)
            self._cancel(placement)

    def _cancel(self, placement: Placement) -> None:
        path = f"/api/orders/{placement.order_id}/cancel/"
        body = {"reason": "chaos"}
        for status, _, _ in self._tries(placement.planned.customer, "POST", path, body, {},
                                        RETRY_CANCEL):  # fmt: skip
            placement.cancel_answer = "no answer" if status is None else str(status)

    def _tries(self, customer: Customer, method: str, path: str, body: Any,
               headers: dict[str, str], retry: frozenset[int]):  # fmt: skip
        """Send until an answer outside `retry` (or the budget runs out); yields every try."""
        deadline = time.monotonic() + RETRY_BUDGET
        for attempt in range(1, 10_000):
            try:
                status, reply, replied = self._send(customer, method, path, body, headers)
            except Unanswered:
                status, reply, replied = None, None, {}
            yield status, reply, replied
            if status is not None and status not in retry:
                return
            if time.monotonic() >= deadline:
                return
            time.sleep(min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.0))

    def _send(self, customer: Customer, method: str, path: str, body: Any,
              headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:  # fmt: skip
        conn = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT)
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "Authorization": f"Token {customer.token}", **headers}  # fmt: skip
        try:
            conn.request(method, path, json.dumps(body), headers)
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise Unanswered(str(exc)) from exc
        finally:
            conn.close()
        try:
            reply = json.loads(raw) if raw else None
        except ValueError:
            reply = raw[:200]
        return response.status, reply, {k.lower(): v for k, v in response.getheaders()}
