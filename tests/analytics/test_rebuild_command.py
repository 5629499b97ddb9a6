"""`manage.py rebuild_analytics`: help, refusal of bad input, and what it tells the operator."""

import subprocess
import sys
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from analytics.models import DailySales
from orders.events import OrderConfirmed
from outbox.models import Delivery
from payments.events import PaymentCaptured
from tests.analytics.pump import deliveries_run
from tests.conftest import ROOT
from tests.notifications.factories import event_recorded, order_made


def manage(env, *args):
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def rebuild(*args):
    out = StringIO()
    call_command("rebuild_analytics", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def handled(settings):
    """A confirmed, paid order whose events the projection and the e-mail handler handled."""
    settings.OUTBOX_WAKE_ON_COMMIT = False
    order = order_made(status="confirmed")
    event_recorded(OrderConfirmed(order_id=order.id))
    event_recorded(PaymentCaptured(order_id=order.id, amount=order.total, currency="USD",
                                   provider_ref="ch_1"))  # fmt: skip
    assert deliveries_run() == 3
    return order


def deliveries():
    return list(Delivery.objects.order_by("id").values_list("status", "attempts", "done_at"))


def days():
    return list(DailySales.objects.values_list())


@pytest.mark.django_db
def test_help_says_what_it_does_and_documents_wait(worker_env):
    # when
    result = manage(worker_env, "rebuild_analytics", "--help")
    # then
    assert result.returncode == 0
    assert "Empty the daily sales projection and replay" in result.stdout
    assert "--wait SECONDS" in result.stdout


@pytest.mark.django_db(transaction=True)
def test_bad_wait_exits_non_zero_with_one_line_and_changes_nothing(worker_env, handled):
    # given
    before = (days(), deliveries())
    # when
    result = manage(worker_env, "rebuild_analytics", "--wait", "-1")
    # then
    assert result.returncode == 1
    assert result.stderr == (
        "CommandError: --wait must be a finite number of seconds, zero or more, not -1\n"
    )
    assert (days(), deliveries()) == before


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-0.5", "--wait must be a finite number of seconds, zero or more, not -0.5"),
        ("nan", "--wait must be a finite number of seconds, zero or more, not nan"),
        ("inf", "--wait must be a finite number of seconds, zero or more, not inf"),
        ("soon", "Error: argument --wait: invalid float value: 'soon'"),
    ],
)
def test_bad_wait_is_refused_before_anything_is_reset(handled, value, message):
    # given
    before = (days(), deliveries())
    # when
    with pytest.raises(CommandError) as refused:
        rebuild("--wait", value)
    # then
    assert str(refused.value) == message
    assert (days(), deliveries()) == before
    assert before[0]


@pytest.mark.django_db(transaction=True)
def test_rebuild_prints_what_it_replayed_and_the_worker_side_restores_the_figures(handled):
    # given
    before = days()
    emails = list(Delivery.objects.filter(handler="notifications.email_customer").values_list())
    # when
    output = rebuild()
    # then: reset, and the projection's two deliveries made due again (not the e-mail's)
    assert output == (
        "analytics reset; 2 events: 0 requeued, 0 created, 0 skipped (already done), "
        "2 reprocessed, 0 already pending\n"
    )
    assert days() == []
    assert deliveries_run() == 2
    assert days() == before
    assert before[0][-2:] == (Decimal("24.40"), Decimal("0.00"))
    assert list(Delivery.objects.filter(handler="notifications.email_customer").values_list()) == (
        emails
    )


@pytest.mark.django_db(transaction=True)
def test_rebuild_that_does_not_finish_in_time_says_how_much_is_left(handled):
    # given: no worker runs
    # when
    with pytest.raises(CommandError) as late:
        rebuild("--wait", "0.3")
    # then
    assert str(late.value) == "2 analytics deliveries still pending after 0.3 s"
