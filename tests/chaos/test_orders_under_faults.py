"""Issue "Prove it under faults" §2: thousands of orders through worker kills and outages.

Web (gunicorn), two Celery workers and beat run as real processes on
PostgreSQL and Redis. Client threads place orders over HTTP with the
contract's mix of tokens, addresses and cancellations, retrying with the same
Idempotency-Key whatever goes wrong. Meanwhile workers are SIGKILLed ten
times (a pool child, or a whole worker that is then restarted), Redis is
flushed once and PostgreSQL restarted once. About one provider call in 80 is
slower than the step lease (tests/chaos/providers.py), and one handler ends its
process (`os._exit`) every time it meets one probe event. Once the faults are
over, every order must end as its scenario says, once, with one charge at most
and one e-mail per event; the killer must be exactly one dead letter, which an
operator acknowledges; and the audit must be clean.

The run takes as long as the machine needs to fulfil the orders: about 6
orders/s on a shared 2-core machine, so some 6 minutes for 2,000.

Knobs (environment): SHOPFLOW_CHAOS_ORDERS (2000), SHOPFLOW_CHAOS_RATE (most
orders/s offered), SHOPFLOW_CHAOS_WINDOW (most orders unsettled),
SHOPFLOW_CHAOS_SEED (printed on every run, to replay one), and on a machine
shared with other test runs SHOPFLOW_CHAOS_PG_RESTART=0 and
SHOPFLOW_TEST_REDIS_FLUSH=flushdb (see tests/chaos/faults.py).
"""

from __future__ import annotations

import os
import random
import time

import pytest
from django.db import OperationalError, connection

from outbox.models import Delivery, OutboxEvent
from outbox.services import deliveries_acknowledge
from tests.chaos.clients import LoadRun, orders_plan
from tests.chaos.conftest import Shop
from tests.chaos.faults import Chaos, faults_plan, pg_restart_is_real
from tests.chaos.verdict import Verdict, orders_unsettled, unfinished, verdict_of
from tests.probe.events import ProbeHappened
from tests.probe.models import ProbeSwitch
from tests.probe.scenarios import probes_record

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.django_db(transaction=True),
    # Minutes on a busy machine; pytest-timeout's 300 s would cut the verdict short.
    pytest.mark.timeout(900),
]

ORDERS = int(os.environ.get("SHOPFLOW_CHAOS_ORDERS", "2000"))
# Orders per second offered at most, and orders placed but not yet settled at most:
# the clients slow down to what the shop fulfils (see LoadRun).
RATE = float(os.environ.get("SHOPFLOW_CHAOS_RATE", "25"))
WINDOW = int(os.environ.get("SHOPFLOW_CHAOS_WINDOW", "40"))
SEED = int(os.environ.get("SHOPFLOW_CHAOS_SEED", str(random.randrange(2**32))))
CLIENT_THREADS = 8  # about gunicorn's 3 workers x 3 threads (Procfile)
KILLS = 10
# Faults land between these shares of the orders placed.
FAULT_WINDOW = (0.05, 0.85)
# Every order must be final this many seconds after the last fault.
RECOVERY_LIMIT = 120.0


def test_every_order_ends_once_and_as_its_scenario_says_through_kills_a_flush_and_a_restart(
    shop: Shop, capsys: pytest.CaptureFixture[str]
) -> None:
    # given
    rng = random.Random(SEED)
    planned = orders_plan(ORDERS, shop.customers, shop.skus, rng)
    load = LoadRun(shop.web.url, planned, threads=CLIENT_THREADS, rate=RATE, window=WINDOW,
                   unsettled=orders_unsettled)  # fmt: skip
    faults = faults_plan(rng, kills=KILLS, window=FAULT_WINDOW)
    chaos = Chaos(faults, progress=lambda: load.progress, workers=shop.workers,
                  restart_worker=shop.restart_worker, broker=shop.broker, rng=rng)  # fmt: skip

    killer = _a_delivery_that_kills_its_worker()

    # when
    began = time.monotonic()
    chaos.start_at(began)
    try:
        placements = load.run()
    except BaseException:
        chaos.stopped.set()
        raise
    placed = time.monotonic()
    chaos.join()
    if chaos.error is not None:
        raise chaos.error
    chaos.workers_ready()  # a restarted worker that cannot start is a failure of its own
    final_at = _wait_final(until=chaos.last_fault + RECOVERY_LIMIT)

    # then: the killer is one dead letter, the worker's death its error; an operator
    # acknowledges it, and the audit below holds the rest to account
    dead = list(Delivery.objects.filter(status=Delivery.Status.DEAD))
    assert [(d.event.event_id, d.handler) for d in dead] == [(killer.event_id, "probe.record")]
    assert dead[0].last_error.startswith("WorkerDied"), dead[0].last_error
    assert Delivery.objects.get(event=killer, handler="probe.projection").status == "done"
    deliveries_acknowledge(ids=[dead[0].pk])
    verdict = verdict_of(placements)
    recovery = None if final_at is None else final_at - chaos.last_fault
    with capsys.disabled():
        print(_report(verdict, chaos, recovery, placing=placed - began,
                      total=time.monotonic() - began, replays=sum(p.replays for p in placements),
                      retried=sum(p.tries > 1 for p in placements)))  # fmt: skip
    assert not verdict.lost, _lines("lost", verdict.lost)
    assert not verdict.duplicated, _lines("duplicated", verdict.duplicated)
    assert not verdict.inconsistent, _lines("inconsistent", verdict.stuck + verdict.inconsistent)
    assert recovery is not None, f"not all final {RECOVERY_LIMIT:g} s after the last fault"


def _a_delivery_that_kills_its_worker() -> OutboxEvent:
    """One probe event whose `probe.record` handler ends its process each time it runs."""
    ProbeSwitch.objects.create(name="killer", handler="probe.record", kills_process=True)
    (event,) = probes_record([ProbeHappened(aggregate="killer", seq=1, fail_while="killer")])
    return event


def _wait_final(*, until: float) -> float | None:
    """When nothing is left moving (orders, sagas, deliveries), or None past `until`."""
    while time.monotonic() < until:
        connection.close()  # a connection from before a database restart is dead
        try:
            if not any(unfinished().values()):
                return time.monotonic()
        except OperationalError:
            pass
        time.sleep(0.5)
    connection.close()
    return None


def _report(verdict: Verdict, chaos: Chaos, recovery: float | None, *, placing: float,
            total: float, replays: int, retried: int) -> str:  # fmt: skip
    restart = "real" if pg_restart_is_real() else "simulated (connections terminated)"
    lines = [
        "",
        f"chaos: {ORDERS} orders (at most {RATE:g}/s, {WINDOW} unsettled), "
        f"seed {SEED} (SHOPFLOW_CHAOS_SEED)",
        f"chaos: lost {len(verdict.lost)}, duplicated {len(verdict.duplicated)}, "
        f"inconsistent {len(verdict.inconsistent)}",
        f"chaos: recovery {'-' if recovery is None else f'{recovery:.1f} s'} "
        f"(last fault -> all final, limit {RECOVERY_LIMIT:g} s); placing {placing:.1f} s "
        f"({ORDERS / placing:.1f} orders/s), total {total:.1f} s; {retried} placements "
        f"retried, {replays} replayed 201s",
        f"chaos: outcomes {dict(sorted(verdict.outcomes.items()))}",
        f"chaos: postgres restart {restart}",
    ]
    for injected in chaos.injected:
        took = injected.ended - injected.started
        lines.append(f"chaos:   t={injected.started - chaos.started:6.1f}s "
                     f"{injected.fault.kind} ({took:.1f} s): {injected.detail}")  # fmt: skip
    return "\n".join(lines)


def _lines(what: str, lines: list[str], limit: int = 80) -> str:
    more = f"\n... and {len(lines) - limit} more" if len(lines) > limit else ""
    return f"{len(lines)} {what}:\n" + "\n".join(lines[:limit]) + more
