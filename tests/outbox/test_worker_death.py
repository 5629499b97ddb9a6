"""A delivery whose handler kills its worker process ends as one dead letter, alone."""

import json

import pytest
from django.core.management import call_command
from django.db import transaction

from outbox.models import Delivery
from outbox.services import events_record
from tests.conftest import wait_until
from tests.probe.events import ProbeHappened
from tests.probe.models import ProbeRecord, ProbeSwitch
from tests.probe.scenarios import effect_counts, expected_effects

pytestmark = pytest.mark.django_db(transaction=True)

LEASE = 2.0  # seconds; the worker's and its beat's OUTBOX_LEASE_SECONDS
KILLER_MAX_ATTEMPTS = 4  # probe.record's max_attempts


def test_a_handler_that_kills_its_worker_ends_as_one_dead_letter_and_holds_back_no_other(
    start_worker, capsys
):
    # given: probe.record ends its process on the killer's event, and ten other
    # aggregates' events commit with it, so the first drain sends them all in
    # one message, behind the killer
    ProbeSwitch.objects.create(name="oom", handler="probe.record", kills_process=True)
    start_worker(concurrency=2, beat=True, OUTBOX_LEASE_SECONDS=str(LEASE))
    # when
    with transaction.atomic():
        rows = events_record([
            ProbeHappened(aggregate="killer", seq=1, fail_while="oom"),
            *(ProbeHappened(aggregate=f"a{i}", seq=1) for i in range(10)),
        ])  # fmt: skip
    killer = Delivery.objects.get(handler="probe.record", aggregate_key="probe:killer")
    others = Delivery.objects.exclude(pk=killer.pk)
    # then: every other delivery is done, each within about one lease
    assert wait_until(lambda: not others.exclude(status="done").exists(), timeout=30)
    waits = [(d.done_at - d.created_at).total_seconds() for d in others]
    assert max(waits) < 2 * LEASE, waits
    # and the killer ends as exactly one dead letter, after max_attempts deaths
    assert wait_until(lambda: Delivery.objects.get(pk=killer.pk).status == "dead", timeout=60)
    killer.refresh_from_db()
    assert killer.attempts == KILLER_MAX_ATTEMPTS
    assert killer.last_error.startswith("WorkerDied: the worker died while handling")
    assert list(Delivery.objects.filter(status="dead")) == [killer]
    # and nothing was handled twice, the killer not at all
    expected = expected_effects(rows)
    del expected[("probe.record", str(rows[0].event_id))]
    assert effect_counts() == expected
    assert not ProbeRecord.objects.filter(handler="probe.record", aggregate="killer").exists()
    # and the operator sees why it died
    call_command("outbox_status", "--json")
    assert json.loads(capsys.readouterr().out)["died_in_worker"] == 1
