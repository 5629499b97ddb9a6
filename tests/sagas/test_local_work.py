"""A worker handles what its own tasks hand on to queues it consumes, without a message.

With real workers: an order placed in this process costs the worker only the
messages this process publishes (its order.created deliveries); the saga's
advance, and the deliveries of the events the saga records, run in the
worker that recorded them. A queue the worker does not consume still gets
its message, and a worker with local work off sends every one.
"""

from __future__ import annotations

import pytest

from analytics.models import DailySales
from notifications.models import Notification
from orders.models import Status
from outbox.models import Delivery
from tests.conftest import wait_until
from tests.sagas.scenarios import place, reloaded

pytestmark = pytest.mark.django_db(transaction=True)


def _all_done(order_count: int) -> bool:
    deliveries = Delivery.objects.all()
    return (
        deliveries.count() >= order_count * 5
        and not deliveries.exclude(status=Delivery.Status.DONE).exists()
    )


def _confirmation_emails() -> int:
    """Confirmation e-mails handled (the test customer has no address: skipped, not sent)."""
    handled = Notification.objects.filter(kind=Notification.Kind.CONFIRMED)
    assert not handled.exclude(status__in=["sent", "skipped"]).exists()
    return handled.count()


def _placed_and_confirmed(count: int, worker_log: str = "") -> None:
    """Place `count` orders, each once the one before is confirmed and its events handled."""
    for placed in range(1, count + 1):
        order = place()
        assert wait_until(lambda n=placed: _all_done(n), timeout=60), worker_log
        assert reloaded(order).status == Status.CONFIRMED


def test_a_workers_saga_moves_and_deliveries_need_no_message_of_their_own(start_worker, mug):
    # given: one worker on every queue, local work on (the default)
    worker = start_worker()
    # when: three orders are placed, one after the other
    _placed_and_confirmed(3, worker.log_tail())
    # then: no advance travelled as a message: the saga start's worker made the moves
    assert worker.tasks_succeeded("sagas.advance") == 0, worker.log_tail()
    # and no delivery message but this process's one per order (order.created's deliveries
    # to the saga's and the events' queues, together): a successor is kept too
    assert worker.tasks_succeeded("outbox.deliver") <= 3, worker.log_tail()
    # and each confirmation e-mail was handled once
    assert _confirmation_emails() == 3


def test_with_local_work_off_every_move_and_delivery_is_a_message(start_worker, mug, settings):
    # given: the same worker with local work off, and one message per queue
    settings.OUTBOX_DISPATCH_SHARED_QUEUES = False
    worker = start_worker(WORKER_LOCAL_WORK="false", OUTBOX_DISPATCH_SHARED_QUEUES="false")
    # when
    _placed_and_confirmed(3, worker.log_tail())
    # then: the advances and the saga's events' deliveries came as messages
    assert worker.tasks_succeeded("sagas.advance") >= 3, worker.log_tail()
    assert worker.tasks_succeeded("outbox.deliver") >= 3 * 5, worker.log_tail()


def test_a_queue_the_worker_does_not_consume_still_gets_its_message(start_workers, mug):
    # given: the e-mails' queue served by a second worker only
    saga_worker = start_workers(1, queues="outbox,events,saga")[0]
    mail_worker = start_workers(1, queues="notifications")[0]
    # when
    _placed_and_confirmed(2, saga_worker.log_tail())
    # then: the e-mails went to the worker that consumes their queue
    assert mail_worker.tasks_succeeded("outbox.deliver") >= 1, mail_worker.log_tail()
    assert _confirmation_emails() == 2
    assert saga_worker.tasks_succeeded("sagas.advance") == 0, saga_worker.log_tail()


def test_a_shared_message_hands_on_what_its_worker_does_not_consume(start_workers, mug):
    # given: the saga's worker does not consume the events queue (analytics' handler)
    saga_worker = start_workers(1, queues="outbox,saga,notifications")[0]
    events_worker = start_workers(1, queues="events")[0]
    # when: order.created's two deliveries travel together, to the saga queue
    _placed_and_confirmed(2, saga_worker.log_tail())
    # then: the daily sales were handled by the worker on their queue, each once
    assert events_worker.tasks_succeeded("outbox.deliver") >= 2, events_worker.log_tail()
    assert '"handler": "analytics.daily_sales"' not in saga_worker.log.read_text()
    assert DailySales.objects.get().orders_placed == 2
