"""The outbox admin: read-only pages for staff, and the requeue and replay actions."""

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from outbox.models import Delivery, OutboxEvent
from outbox.services import events_record
from tests.probe.events import ProbeHappened

pytestmark = pytest.mark.django_db(transaction=True)

EVENTS = reverse("admin:outbox_outboxevent_changelist")
DELIVERIES = reverse("admin:outbox_delivery_changelist")
TRACEBACK = 'Traceback (most recent call last):\n  File "probe.py"\nRuntimeError: <boom>'


@pytest.fixture(autouse=True)
def no_wake_up(settings):
    settings.OUTBOX_WAKE_ON_COMMIT = False


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_superuser("ops", "ops@example.com", "pw")
    client.force_login(user)
    return client


@pytest.fixture
def viewer(client, django_user_model):
    """Staff who may look at the outbox but not act on it."""
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(codename__in=["view_outboxevent", "view_delivery"])
    )
    client.force_login(user)
    return client


@pytest.fixture
def events() -> dict[str, OutboxEvent]:
    """A done event, a dead one (probe.record failed for good) and a pending one."""
    with transaction.atomic():
        done, dead, pending = events_record(
            [ProbeHappened(aggregate=f"a{i}", seq=1) for i in range(3)]
        )
    Delivery.objects.filter(event__in=[done, dead]).update(status="done", done_at=timezone.now())
    Delivery.objects.filter(event=dead, handler="probe.record").update(
        status="dead", attempts=4, last_error="RuntimeError: <boom>", last_traceback=TRACEBACK
    )
    return {"done": done, "dead": dead, "pending": pending}


def listed(response) -> list[int]:
    assert response.status_code == 200
    return sorted(obj.pk for obj in response.context["cl"].result_list)


def act(client, url: str, action: str, objects) -> object:
    data = {"action": action, "_selected_action": [str(o.pk) for o in objects]}
    return client.post(url, data, follow=True)


# --- Pages ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected"), [("done", "done"), ("dead", "dead"), ("pending", "pending")]
)
def test_event_changelist_filters_by_the_state_derived_from_deliveries(
    staff, events, state, expected
):
    # when
    response = staff.get(EVENTS, {"state": state})
    # then
    assert listed(response) == [events[expected].pk]


def test_event_changelist_filters_by_type_and_aggregate_type(staff, events):
    # when
    by_type = staff.get(EVENTS, {"type": "probe.happened"})
    by_other_aggregate = staff.get(EVENTS, {"aggregate_type": "order"})
    # then
    assert listed(by_type) == sorted(e.pk for e in events.values())
    assert listed(by_other_aggregate) == []


@pytest.mark.parametrize("term", ["pk", "event_id", "a1", "probe:a1"])
def test_event_changelist_finds_an_event_by_number_uuid_or_aggregate(staff, events, term):
    # given
    event = events["dead"]  # aggregate a1
    query = {"pk": str(event.pk), "event_id": str(event.event_id)}.get(term, term)
    # when
    response = staff.get(EVENTS, {"q": query})
    # then
    assert event.pk in listed(response)
    assert events["pending"].pk not in listed(response)


def test_event_page_shows_pretty_payload_and_headers_and_each_delivery(staff, events):
    # given
    event = events["dead"]
    # when
    response = staff.get(reverse("admin:outbox_outboxevent_change", args=[event.pk]))
    # then
    assert response.status_code == 200
    page = response.content.decode()
    payload = json.dumps(event.payload, indent=2, sort_keys=True).replace('"', "&quot;")
    assert f"<pre>{payload}</pre>" in page
    assert "correlation_id" in page
    assert "probe.projection" in page and "probe.record" in page
    assert "RuntimeError: &lt;boom&gt;" in page
    assert 'name="_save"' not in page  # read-only: no save button


def test_delivery_changelist_filters_dead_letters_by_handler(staff, events):
    # when
    response = staff.get(DELIVERIES, {"status": "dead", "handler": "probe.record"})
    # then
    dead = Delivery.objects.get(status="dead")
    assert listed(response) == [dead.pk]
    assert (
        staff.get(DELIVERIES, {"status": "dead", "handler": "probe.projection"})
        .context["cl"]
        .result_count
        == 0
    )


def test_delivery_page_shows_the_traceback(staff, events):
    # given
    dead = Delivery.objects.get(status="dead")
    # when
    response = staff.get(reverse("admin:outbox_delivery_change", args=[dead.pk]))
    # then
    assert response.status_code == 200
    assert "Traceback (most recent call last):" in response.content.decode()
    assert "RuntimeError: &lt;boom&gt;</pre>" in response.content.decode()


def test_outbox_rows_cannot_be_added_changed_or_deleted_through_the_admin(staff, events):
    # given
    event = events["dead"]
    dead = Delivery.objects.get(status="dead")
    # when
    add = staff.get(reverse("admin:outbox_outboxevent_add"))
    change = staff.post(reverse("admin:outbox_delivery_change", args=[dead.pk]), {"status": "done"})
    delete = staff.post(
        reverse("admin:outbox_outboxevent_delete", args=[event.pk]), {"post": "yes"}
    )
    # then
    assert (add.status_code, change.status_code, delete.status_code) == (403, 403, 403)
    assert Delivery.objects.get(pk=dead.pk).status == "dead"
    assert OutboxEvent.objects.filter(pk=event.pk).exists()


def test_pages_are_for_staff_only(client, django_user_model, events):
    # given
    client.force_login(django_user_model.objects.create_user("shopper", password="pw"))
    # when
    response = client.get(EVENTS)
    # then
    assert response.status_code == 302 and "/login/" in response["Location"]


# --- Actions --------------------------------------------------------------------------------


def test_requeue_dead_letters_on_deliveries_makes_only_dead_ones_due(staff, events):
    # given
    dead = Delivery.objects.get(status="dead")
    done = Delivery.objects.filter(status="done").first()
    # when
    response = act(staff, DELIVERIES, "requeue_dead_letters", [dead, done])
    # then
    assert "Requeued 1 dead letters." in response.content.decode()
    dead.refresh_from_db()
    assert (dead.status, dead.attempts) == ("pending", 0)
    assert Delivery.objects.get(pk=done.pk).status == "done"


def test_requeue_dead_letters_on_events_requeues_their_dead_deliveries(staff, events):
    # when
    response = act(staff, EVENTS, "requeue_dead_letters", events.values())
    # then
    assert "Requeued 1 dead letters." in response.content.decode()
    assert not Delivery.objects.filter(status="dead").exists()
    assert Delivery.objects.filter(event=events["done"], status="done").count() == 2


def test_replay_selected_events_goes_through_the_inbox(staff, events):
    # given: the done event lost its projection's inbox record
    Delivery.objects.filter(event=events["done"], handler="probe.projection").delete()
    # when
    response = act(staff, EVENTS, "replay_events", events.values())
    # then
    assert (
        "Replayed 3 events: 1 requeued, 1 created, 2 skipped (already done), 0 reprocessed, "
        "2 already pending." in response.content.decode()
    )
    statuses = {(d.event_id, d.handler): d.status for d in Delivery.objects.all()}
    assert statuses[(events["done"].pk, "probe.record")] == "done"
    assert statuses[(events["done"].pk, "probe.projection")] == "pending"
    assert statuses[(events["dead"].pk, "probe.record")] == "pending"


def test_replay_of_events_past_the_retention_is_refused_in_the_admin(staff, events, settings):
    # given
    old = events["dead"]
    OutboxEvent.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(days=settings.OUTBOX_RETENTION_DAYS + 1)
    )
    # when
    response = act(staff, EVENTS, "replay_events", [old])
    # then
    assert "Nothing replayed" in response.content.decode()
    assert "--force" in response.content.decode()
    assert Delivery.objects.filter(event=old, status="dead").exists()


def test_staff_who_may_only_view_get_the_pages_but_not_the_actions(viewer, events):
    # when
    page = viewer.get(EVENTS)
    attempt = act(viewer, EVENTS, "requeue_dead_letters", events.values())
    # then
    assert page.status_code == 200
    assert "requeue_dead_letters" not in page.content.decode()
    assert attempt.status_code == 200
    assert Delivery.objects.filter(status="dead").count() == 1
