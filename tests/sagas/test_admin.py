"""The saga admin: pages for staff with steps and the order's timeline, and the repair actions."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from inventory.models import Product
from orders.models import Order
from sagas.models import Saga, SagaStep
from tests.sagas.scenarios import place, saga_of

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = reverse("admin:sagas_saga_changelist")


@pytest.fixture
def viewer(client, django_user_model):
    """Staff who may look at sagas but not repair them."""
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(codename__in=["view_saga", "view_sagastep"])
    )
    client.force_login(user)
    return client


@pytest.fixture
def stuck(in_process, settings, mug):
    """A saga whose refund failed for good: shipping to AQ, refunds failing twice, one try each."""
    settings.SAGA_COMPENSATION_MAX_ATTEMPTS = 1
    order = place(token="tok_refundFlaky", country="AQ")
    in_process.run_until_quiet()
    saga = saga_of(order)
    assert saga.status == Saga.Status.COMPENSATION_FAILED
    return saga


@pytest.fixture
def running(in_process, mug):
    """A saga that reserved the stock and has not charged yet."""
    order = place()
    in_process.deliver()
    in_process.advance()
    saga = saga_of(order)
    assert (saga.status, saga.current_step) == (Saga.Status.RUNNING, 1)
    return saga


def act(client, action: str, saga: Saga, **extra):
    data = {"action": action, "_selected_action": [str(saga.pk)], **extra}
    return client.post(CHANGELIST, data, follow=True)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_the_changelist_lists_sagas_with_their_status(staff, stuck, running):
    response = staff.get(CHANGELIST)
    assert response.status_code == 200
    assert stuck.key in response.text and running.key in response.text
    assert "compensation_failed" in response.text
    filtered = staff.get(CHANGELIST, {"status__exact": "running"})
    assert running.key in filtered.text and stuck.key not in filtered.text


def test_the_change_page_shows_the_steps_and_the_orders_timeline(staff, stuck):
    response = staff.get(reverse("admin:sagas_saga_change", args=[stuck.pk]))
    assert response.status_code == 200
    for text in ("reserve_stock", "charge_payment", "compensation_failed", "refund unavailable",
                 "inventory.reserved", "payment.captured", "shipment.rejected"):  # fmt: skip
        assert text in response.text, text
    assert 'name="_save"' not in response.text


def test_retry_puts_a_failed_compensation_back_to_work_and_it_finishes(
    staff, stuck, in_process, settings
):
    # when
    response = act(staff, "retry_from_failed_step", stuck)
    # then
    assert "compensation retried" in " ".join(messages_of(response))
    stuck.refresh_from_db()
    assert stuck.status == Saga.Status.COMPENSATING
    assert stuck.steps.get(name="charge_payment").status == SagaStep.Status.COMPENSATING
    settings.SAGA_COMPENSATION_MAX_ATTEMPTS = 8
    in_process.run_until_quiet()
    stuck.refresh_from_db()
    assert stuck.status == Saga.Status.COMPENSATED
    assert reloaded_order(stuck).status == "failed"


def test_retry_refuses_a_saga_that_did_not_fail(staff, running):
    response = act(staff, "retry_from_failed_step", running)
    assert "only a saga whose compensation failed" in " ".join(messages_of(response))
    assert saga_of_pk(running).status == Saga.Status.RUNNING


def test_compensate_now_undoes_a_running_saga_and_fails_its_order(staff, running, in_process):
    response = act(staff, "compensate_now", running)
    assert "compensation requested" in " ".join(messages_of(response))
    in_process.run_until_quiet()
    saga = saga_of_pk(running)
    assert (saga.status, saga.failure_reason) == (Saga.Status.COMPENSATED, "payment_unavailable")
    order = reloaded_order(saga)
    assert (order.status, order.failure_reason) == ("failed", "payment_unavailable")
    assert Product.objects.get(sku="MUG-1").reserved == 0


def test_mark_resolved_asks_for_a_note_then_records_it(staff, stuck):
    # when: the action is chosen, a form asks for the note
    form = act(staff, "mark_resolved", stuck)
    assert form.status_code == 200 and 'name="note"' in form.text
    # when: the form is sent
    response = act(staff, "mark_resolved", stuck, apply="1", note="refunded by hand")
    # then
    assert "marked resolved" in " ".join(messages_of(response))
    saga = saga_of_pk(stuck)
    assert (saga.resolution_note, saga.resolved_at is not None) == ("refunded by hand", True)


def test_mark_resolved_without_a_note_changes_nothing(staff, stuck):
    response = act(staff, "mark_resolved", stuck, apply="1", note="  ")
    assert "needs a note" in " ".join(messages_of(response))
    assert saga_of_pk(stuck).resolved_at is None


def test_staff_without_the_change_permission_see_sagas_but_cannot_repair_them(viewer, stuck):
    assert viewer.get(reverse("admin:sagas_saga_change", args=[stuck.pk])).status_code == 200
    act(viewer, "retry_from_failed_step", stuck)
    assert saga_of_pk(stuck).status == Saga.Status.COMPENSATION_FAILED


def saga_of_pk(saga: Saga) -> Saga:
    return Saga.objects.get(pk=saga.pk)


def reloaded_order(saga: Saga) -> Order:
    return Order.objects.get(pk=saga.key)
