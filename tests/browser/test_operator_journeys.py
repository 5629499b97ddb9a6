"""An operator at work in a real browser: the admin, a real Celery worker with beat, real sagas.

Each step leaves a screenshot under var/screenshots/<test>/.
"""

from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone
from playwright.sync_api import Page, expect

from inventory.models import Product
from orders.models import Order
from outbox.models import Delivery
from sagas.models import Saga
from tests.conftest import wait_until
from tests.dashboard.factories import SagaFactory, deliveries_done, delivery_dead, probe_recorded
from tests.probe.events import ProbeHappened
from tests.probe.models import ProbeSwitch
from tests.probe.scenarios import probes_record
from tests.sagas.scenarios import place, saga_of, timeline, wait_settled

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def mug(transactional_db):
    return Product.objects.create(sku="MUG-1", name="Mug", price=Decimal("9.95"), on_hand=10)


def run_action(page: Page, pk: object, action: str) -> None:
    """Tick one row of an admin list and run an action on it."""
    page.locator(f'input[name="_selected_action"][value="{pk}"]').check()
    page.locator('select[name="action"]').select_option(label=action)
    page.get_by_role("button", name="Go").click()


def chart_bar(page: Page, chart: str, label: str):
    return page.locator(f'svg.chart[aria-label="{chart}"] g.bar[data-label="{label}"]')


def test_an_operator_logs_in_and_finds_the_dashboard_on_the_admin_index(page, operator, shoot):
    # when
    page.goto("/admin/")
    expect(page.get_by_label("Username")).to_be_visible()
    shoot("login form")
    page.get_by_label("Username").fill(operator[0])
    page.get_by_label("Password").fill(operator[1])
    page.get_by_role("button", name="Log in").click()
    # then
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()
    link = page.get_by_role("link", name="Operator dashboard")
    expect(link).to_be_visible()
    shoot("admin index with the dashboard link")
    link.click()
    expect(page.get_by_role("heading", name="Operator dashboard")).to_be_visible()


def test_an_operator_reads_the_timeline_of_a_failed_order(admin_page, celery_worker, mug, shoot):
    # given: a declined card, and the saga fails the order
    order = wait_settled(place(token="tok_chargeDeclined"))
    assert order.status == Order.objects.get(pk=order.pk).status == "failed"
    # when
    admin_page.goto("/admin/orders/order/")
    admin_page.locator("#changelist-filter").get_by_role("link", name="Failed", exact=True).click()
    shoot("failed orders")
    admin_page.get_by_role("link", name=order.number).click()
    # then
    entries = admin_page.locator("table.order-timeline tbody tr td:nth-child(2)")
    expect(entries).to_have_text(timeline(order))
    assert timeline(order)[-1] == "order.failed"
    expect(admin_page.locator(".field-failure_reason")).to_contain_text("Payment Declined")
    shoot("failed order with its timeline")


def test_an_operator_requeues_a_dead_letter_and_it_ends_done(admin_page, celery_worker, shoot):
    # given: probe.record fails for good while the switch is on
    ProbeSwitch.objects.create(name="outage", handler="probe.record")
    (event,) = probes_record([ProbeHappened(aggregate="p1", seq=1, fail_while="outage")])
    dead = Delivery.objects.get(event=event, handler="probe.record")
    assert wait_until(lambda: Delivery.objects.get(pk=dead.pk).status == "dead", timeout=30)
    ProbeSwitch.objects.all().delete()  # the outage is over
    # when: from the dashboard to the handler's dead letters, then "Requeue"
    admin_page.goto("/admin/dashboard/")
    expect(admin_page.locator("#outbox-dead")).to_have_text("1")
    shoot("dashboard with a dead letter")
    chart_bar(admin_page, "Dead letters per handler", "probe.record").locator("rect").click()
    expect(admin_page.locator("#result_list tbody tr")).to_have_count(1)
    shoot("dead letters of probe.record")
    run_action(admin_page, dead.pk, "Requeue dead letters")
    expect(admin_page.locator(".messagelist .success")).to_have_text("Requeued 1 dead letters.")
    # then
    assert wait_until(lambda: Delivery.objects.get(pk=dead.pk).status == "done", timeout=30)
    admin_page.goto(f"/admin/outbox/delivery/{dead.pk}/change/")
    expect(admin_page.locator(".field-status .readonly")).to_have_text("Done")
    shoot("requeued delivery done")


def test_an_operator_retries_a_failed_saga_and_it_ends_compensated(
    admin_page, celery_worker, mug, shoot
):
    # given: Antarctica is not served, and the refund fails both attempts it is allowed
    order = place(token="tok_refundFlaky", country="AQ")
    assert wait_until(lambda: (s := saga_of(order)) and s.status == "compensation_failed", 40)
    # when: from the dashboard to the failed sagas, then "Retry from the failed step"
    admin_page.goto("/admin/dashboard/")
    expect(chart_bar(admin_page, "Sagas by state", "compensation_failed")).to_have_attribute(
        "data-value", "1"
    )
    chart_bar(admin_page, "Sagas by state", "compensation_failed").locator("rect").click()
    shoot("sagas whose compensation failed")
    run_action(admin_page, saga_of(order).pk, "Retry from the failed step")
    expect(admin_page.locator(".messagelist .success")).to_contain_text("compensation retried")
    # then: the third refund attempt goes through
    assert wait_until(lambda: saga_of(order).status == Saga.Status.COMPENSATED, timeout=40)
    admin_page.goto(f"/admin/sagas/saga/{saga_of(order).pk}/change/")
    expect(admin_page.locator(".field-status .readonly")).to_have_text("Compensated")
    assert "payment.refunded" in timeline(wait_settled(order))
    shoot("saga compensated")


def test_the_dashboard_draws_its_charts_and_refreshes_them_by_itself(admin_page, settings, shoot):
    # given
    settings.ADMIN_DASHBOARD_REFRESH_SECONDS = 0.5
    SagaFactory.create_batch(2, status="completed")
    SagaFactory(status="compensation_failed")
    with transaction.atomic():  # committed already done: a module's worker never sees it pending
        deliveries_done(probe_recorded("a"), at=timezone.now())
    # when
    admin_page.get_by_role("link", name="Operator dashboard").click()
    # then
    expect(admin_page.locator("svg.chart")).to_have_count(3)  # no dead letters: no such chart
    expect(admin_page.locator('svg.chart[aria-label="Sagas by state"] g.bar')).to_have_count(5)
    expect(chart_bar(admin_page, "Sagas by state", "completed")).to_have_attribute(
        "data-value", "2"
    )
    expect(admin_page.locator("#outbox-rate")).to_have_text("0.03")  # 2 deliveries in 60 s
    shoot("dashboard")
    # when a dead letter appears, the open page shows it without a reload
    with transaction.atomic():
        delivery_dead(probe_recorded("b"), "probe.record")
    expect(admin_page.locator("#outbox-dead")).to_have_text("1")
    expect(admin_page.locator("svg.chart")).to_have_count(4)
    expect(chart_bar(admin_page, "Dead letters per handler", "probe.record")).to_be_visible()
    shoot("dashboard refreshed with a dead letter")
