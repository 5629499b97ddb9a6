"""Each order e-mail, in text and HTML: order number, items, total and what applies to it."""

from decimal import Decimal

import pytest

from notifications.services import notification_compose
from orders.models import FailureReason
from payments.models import Payment
from tests.notifications.factories import PaymentFactory, ShipmentFactory, order_made

pytestmark = pytest.mark.django_db


def parts(message):
    """The text body and the HTML alternative of a composed e-mail."""
    html = [content for content, mimetype in message.alternatives if mimetype == "text/html"]
    assert len(html) == 1
    return message.body, html[0]


def shipped_order(status="shipped"):
    order = order_made(status=status)
    PaymentFactory(order_id=order.id, amount=order.total)
    ShipmentFactory(order_id=order.id, status=status, tracking_number="TRK-7Q2X")
    return order


@pytest.mark.parametrize("kind", ["confirmed", "shipped", "delivered", "cancelled", "failed"])
def test_every_email_names_the_order_lists_its_items_and_total_in_text_and_html(kind, settings):
    # given
    settings.DEFAULT_FROM_EMAIL = "shop@shopflow.test"
    order = order_made(customer__email="ada@example.com")
    # when
    message = notification_compose(kind=kind, order=order)
    # then
    text, html = parts(message)
    assert order.number in message.subject
    assert "\n" not in message.subject
    assert (message.to, message.from_email) == (["ada@example.com"], "shop@shopflow.test")
    assert "2 x Mug (MUG-1)  19.90 USD" in text
    assert "1 x Green tea (TEA-1)  4.50 USD" in text
    assert "Total: 24.40 USD" in text
    for fragment in (order.number, "Mug (MUG-1)", "19.90 USD", "Green tea (TEA-1)", "24.40 USD"):
        assert fragment in html


def test_confirmed_email_says_the_order_is_confirmed():
    # given
    order = order_made(status="confirmed")
    # when
    message = notification_compose(kind="confirmed", order=order)
    # then
    text, html = parts(message)
    assert message.subject == f"Order {order.number} is confirmed"
    assert "Your order is confirmed" in text
    assert "Your order is confirmed" in html


@pytest.mark.parametrize(
    ("kind", "subject"), [("shipped", "has shipped"), ("delivered", "was delivered")]
)
def test_shipped_and_delivered_emails_give_the_tracking_number(kind, subject):
    # given
    order = shipped_order(status=kind)
    # when
    message = notification_compose(kind=kind, order=order)
    # then
    text, html = parts(message)
    assert message.subject == f"Order {order.number} {subject}"
    assert "TRK-7Q2X" in text
    assert "TRK-7Q2X" in html


def test_cancelled_email_gives_the_reason_and_the_refund():
    # given
    order = order_made(status="cancelled", cancel_reason="Ordered the wrong colour")
    PaymentFactory(order_id=order.id, amount=order.total, status=Payment.Status.REFUNDED)
    # when
    message = notification_compose(kind="cancelled", order=order)
    # then
    text, html = parts(message)
    assert message.subject == f"Order {order.number} was cancelled"
    assert "Reason: Ordered the wrong colour." in text
    assert "Reason: Ordered the wrong colour." in html
    refund = "The 24.40 USD you paid has been refunded to your original payment method."
    assert refund in text
    assert refund in html


def test_cancelled_email_without_reason_or_payment_says_nobody_charged_you():
    # given
    order = order_made(status="cancelled")
    # when
    text, html = parts(notification_compose(kind="cancelled", order=order))
    # then
    assert "Reason:" not in text
    assert "You have not been charged." in text
    assert "You have not been charged." in html


def test_cancel_reason_is_escaped_in_html_and_kept_verbatim_in_text():
    # given
    order = order_made(status="cancelled", cancel_reason='<b>"too late" & gone</b>')
    # when
    text, html = parts(notification_compose(kind="cancelled", order=order))
    # then
    assert '<b>"too late" & gone</b>' in text
    assert "&lt;b&gt;&quot;too late&quot; &amp; gone&lt;/b&gt;" in html
    assert '<b>"too late"' not in html


@pytest.mark.parametrize(
    ("reason", "payment_status", "explanation", "money"),
    [
        (FailureReason.INSUFFICIENT_STOCK, None, "out of stock", "You have not been charged."),
        (FailureReason.PAYMENT_DECLINED, Payment.Status.DECLINED, "payment method was declined",
         "You have not been charged."),
        (FailureReason.PAYMENT_UNAVAILABLE, Payment.Status.PENDING, "could not reach the payment",
         "If any amount was charged, it will be refunded in full."),
        (FailureReason.SHIPPING_UNAVAILABLE, Payment.Status.REFUNDED, "cannot deliver",
         "The 24.40 USD you paid has been refunded to your original payment method."),
        (FailureReason.SHIPPING_UNAVAILABLE, Payment.Status.CAPTURED, "cannot deliver",
         "The 24.40 USD you paid is being refunded to your original payment method."),
    ],
)  # fmt: skip
def test_failed_email_explains_the_failure_and_the_money_in_plain_language(
    reason, payment_status, explanation, money
):
    # given
    order = order_made(status="failed", failure_reason=reason)
    if payment_status is not None:
        PaymentFactory(order_id=order.id, amount=order.total, status=payment_status)
    # when
    message = notification_compose(kind="failed", order=order)
    # then
    text, html = parts(message)
    assert message.subject == f"Order {order.number} could not be completed"
    for body in (text, html):
        assert explanation in body
        assert money in body
        assert reason not in body  # the code is for us, the sentence for the customer


def test_every_failure_reason_has_a_plain_language_explanation():
    # given
    explanations = set()
    for reason in FailureReason.values:
        order = order_made(status="failed", failure_reason=reason)
        # when
        text, _ = parts(notification_compose(kind="failed", order=order))
        # then
        sentence = text.split("we could not complete your order.")[1].splitlines()[0].strip()
        assert sentence, f"no explanation for {reason}"
        explanations.add(sentence)
    assert len(explanations) == len(FailureReason.values)


def test_money_is_shown_with_the_currency_minor_units():
    # given
    order = order_made(lines={"PEN-1": ("Pen", 3, "2.10")}, status="confirmed")
    # when
    text, _ = parts(notification_compose(kind="confirmed", order=order))
    # then
    assert order.total == Decimal("6.30")
    assert "3 x Pen (PEN-1)  6.30 USD" in text
    assert "Total: 6.30 USD" in text
