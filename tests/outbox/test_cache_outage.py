"""The cache Redis is an optimisation for the relay: deliveries flow while it is down."""

import pytest
from django.db import transaction

from outbox import relay
from outbox.models import Delivery
from outbox.services import events_record
from tests.conftest import wait_until
from tests.probe.events import ProbeHappened
from tests.probe.models import ProbeRecord

pytestmark = pytest.mark.django_db(transaction=True)

# Nothing listens on port 1: every cache call fails with a connection error.
DEAD_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def cache_down(settings):
    settings.CACHES = {"default": {"BACKEND": "shopflow.cache.RedisCache", "LOCATION": DEAD_REDIS}}


def test_a_drain_claims_and_publishes_while_the_cache_is_down(settings, cache_down, redis_client):
    # given
    settings.OUTBOX_WAKE_ON_COMMIT = False
    with transaction.atomic():
        events_record([ProbeHappened(aggregate="a1", seq=1)])
    # when
    published = relay.drain()
    # then
    assert published == 2
    assert Delivery.objects.filter(lease_id__isnull=False).count() == 2


def test_events_reach_their_handlers_through_a_worker_whose_cache_is_down(cache_down, start_worker):
    # given: no beat; the worker and this process only know a dead cache; the broker is up
    start_worker(REDIS_URL=DEAD_REDIS)
    # when
    with transaction.atomic():
        events_record([ProbeHappened(aggregate="a1", seq=1), ProbeHappened(aggregate="a2", seq=1)])
    # then: the commit's wake-up still sent a drain, and the drain ran
    assert wait_until(lambda: ProbeRecord.objects.count() == 4, timeout=20)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"done"}
