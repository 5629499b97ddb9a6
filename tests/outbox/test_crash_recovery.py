"""Work lost to a killed worker or a wiped Redis comes back, and is done once."""

import os
import signal

import pytest
from django.core.cache import cache

from outbox.models import Delivery
from tests.conftest import redis_wipe, wait_until
from tests.probe.events import ProbeHappened
from tests.probe.handlers import SLEEPING_KEY
from tests.probe.models import ProbeRecord
from tests.probe.scenarios import all_finished, effect_counts, expected_effects, probes_record

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_event_whose_worker_process_is_killed_mid_handler_is_handled_once_after_the_lease(
    start_worker,
):
    # given: a handler that sleeps inside its transaction
    worker = start_worker(concurrency=2, beat=True)
    rows = probes_record([ProbeHappened(aggregate="a1", seq=1, delay_ms=1000)])
    event_id = str(rows[0].event_id)
    key = SLEEPING_KEY.format(handler="probe.projection", event_id=event_id)
    assert wait_until(lambda: cache.get(key) is not None, timeout=20)
    victim = cache.get(key)
    assert victim in worker.pool_pids()
    # when
    os.kill(victim, signal.SIGKILL)
    # then: the lease runs out (3 s in tests), a drain re-sends, another process does it
    assert wait_until(lambda: ProbeRecord.objects.count() == 2, timeout=30)
    assert wait_until(all_finished)
    assert victim not in worker.pool_pids()
    assert effect_counts() == expected_effects(rows)
    assert victim not in ProbeRecord.objects.values_list("pid", flat=True)
    # the killed attempt rolled back with its transaction; only its start, committed
    # before the handler ran, was counted, and names the attempt that died
    killed = Delivery.objects.get(handler="probe.projection")
    assert (killed.status, killed.attempts) == ("done", 2)
    assert killed.last_error == "WorkerDied: the worker died while handling attempt 1"
    untouched = Delivery.objects.get(handler="probe.record")
    assert (untouched.status, untouched.attempts) == ("done", 1)


def test_wiping_redis_mid_run_loses_no_event_and_duplicates_none(start_worker, redis_client):
    # given: small messages and no prefetch, so published work queues up in Redis
    start_worker(
        concurrency=2, beat=True, CELERY_WORKER_PREFETCH_MULTIPLIER="1", OUTBOX_CHUNK_SIZE="4"
    )
    rows = probes_record(
        ProbeHappened(aggregate=f"a{a}", seq=seq, delay_ms=10)
        for seq in range(1, 4)
        for a in range(16)
    )
    assert wait_until(lambda: redis_client.llen("events") >= 3, timeout=30)
    # when: queued deliveries, drain requests and the wake-up key are all lost
    redis_wipe(redis_client)
    # then: the leases run out, a drain re-sends what was lost, nothing runs twice
    assert ProbeRecord.objects.count() < 2 * len(rows), "finished before the wipe"
    assert wait_until(all_finished, timeout=60)
    assert effect_counts() == expected_effects(rows)
