"""An event committed in a transaction reaches its handlers in a real worker."""

import pytest
from django.db import transaction

from outbox.models import Delivery
from outbox.services import events_record
from tests.conftest import wait_until
from tests.probe.events import ProbeHappened
from tests.probe.models import ProbeRecord

pytestmark = pytest.mark.django_db(transaction=True)


def test_committed_event_is_handled_once_by_each_handler(start_worker):
    # given
    start_worker()
    # when
    with transaction.atomic():
        events_record([ProbeHappened(aggregate="a1", seq=1)])
    # then
    assert wait_until(lambda: ProbeRecord.objects.count() == 2, timeout=15)
    assert sorted(ProbeRecord.objects.values_list("handler", flat=True)) == [
        "probe.projection",
        "probe.record",
    ]
    assert set(Delivery.objects.values_list("status", flat=True)) == {"done"}
