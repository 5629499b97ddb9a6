"""Charging and refunding an order's payment: once each, whatever is repeated or raced."""

import uuid
from decimal import Decimal

import pytest
from django.db import transaction

from outbox.models import OutboxEvent
from payments import services
from payments.gateways import PaymentDeclined
from payments.models import Payment, SandboxCall, SandboxLedgerEntry
from payments.services import payment_charge, payment_refund
from tests.conftest import run_concurrently

# The services refuse to run inside a transaction, so the tests may not wrap them in one.
pytestmark = pytest.mark.django_db(transaction=True)

ORDER = uuid.UUID("00000000-0000-0000-0000-000000000001")


def charge(token: str = "tok_visa", key: str = "saga:1:charge_payment") -> Payment:
    return payment_charge(
        order_id=ORDER, amount=Decimal("19.90"), currency="USD", token=token, idempotency_key=key
    )


def events(name: str) -> int:
    return OutboxEvent.objects.filter(type=name).count()


class GatewayCalledAgain(AssertionError):
    pass


@pytest.fixture
def gateway_forbidden(monkeypatch):
    """From now on any call to the gateway fails the test."""

    def refuse():
        raise GatewayCalledAgain("the gateway was called again")

    return lambda: monkeypatch.setattr(services, "get_gateway", refuse)


def test_a_charge_captures_the_payment_and_records_payment_captured():
    payment = charge()
    entry = SandboxLedgerEntry.objects.get(kind="charge")
    assert (payment.status, payment.provider_ref) == ("captured", entry.reference)
    assert entry.idempotency_key == "saga:1:charge_payment"
    assert events("payment.captured") == 1


def test_a_captured_payment_is_never_charged_again(gateway_forbidden):
    first = charge()
    gateway_forbidden()
    again = charge(key="another-key")
    assert (again.pk, again.status, again.provider_ref) == (
        first.pk,
        "captured",
        first.provider_ref,
    )
    assert SandboxLedgerEntry.objects.filter(kind="charge").count() == 1
    assert events("payment.captured") == 1


def test_a_refunded_payment_is_never_charged_again(gateway_forbidden):
    charge()
    payment_refund(order_id=ORDER)
    gateway_forbidden()
    assert charge().status == "refunded"


def test_a_declined_payment_stays_declined_without_asking_the_gateway(gateway_forbidden):
    with pytest.raises(PaymentDeclined):
        charge(token="tok_chargeDeclined")
    gateway_forbidden()
    with pytest.raises(PaymentDeclined):
        charge(token="tok_chargeDeclined")
    assert Payment.objects.get(order_id=ORDER).status == "declined"
    assert events("payment.declined") == 1


def test_a_retried_charge_reuses_the_first_attempts_key():
    # given: the first attempt failed transiently after the payment row was written
    with pytest.raises(Exception, match="unavailable"):
        charge(token="tok_flaky", key="first")
    # when: a later attempt passes another key
    with pytest.raises(Exception, match="unavailable"):
        charge(token="tok_flaky", key="second")
    payment = charge(token="tok_flaky", key="third")
    # then: the gateway saw one key throughout
    assert payment.status == "captured"
    assert list(SandboxCall.objects.values_list("idempotency_key", "attempts")) == [("first", 3)]


def test_ten_racing_charges_for_one_order_charge_it_once():
    payments = run_concurrently(10, charge)
    assert {p.pk for p in payments} == {payments[0].pk}
    assert SandboxLedgerEntry.objects.filter(kind="charge").count() == 1
    assert Payment.objects.get().status == "captured"
    assert events("payment.captured") == 1


def test_a_charge_inside_a_transaction_is_refused():
    with pytest.raises(RuntimeError, match="must not run in a transaction"), transaction.atomic():
        charge()
    assert not Payment.objects.exists()


def test_a_refund_refunds_a_captured_payment_once():
    charge()
    first = payment_refund(order_id=ORDER)
    again = payment_refund(order_id=ORDER)
    assert (first.status, again.refund_ref) == ("refunded", first.refund_ref)
    assert SandboxLedgerEntry.objects.filter(kind="refund").count() == 1
    assert events("payment.refunded") == 1


def test_racing_refunds_of_one_payment_refund_it_once():
    charge()
    outcomes = run_concurrently(5, _refund_or_error)
    assert outcomes.count("refunded") >= 1
    assert SandboxLedgerEntry.objects.filter(kind="refund").count() == 1
    assert Payment.objects.get().status == "refunded"
    assert events("payment.refunded") == 1


def _refund_or_error() -> str:
    try:
        payment_refund(order_id=ORDER)
    except Exception as exc:  # a loser may be refused by the gateway: never a second refund
        return type(exc).__name__
    return "refunded"


def test_refunding_a_payment_that_was_never_captured_moves_no_money():
    assert payment_refund(order_id=ORDER) is None
    with pytest.raises(PaymentDeclined):
        charge(token="tok_chargeDeclined")
    # A decline may follow an earlier attempt that charged and timed out: the gateway
    # is asked by the key (a lookup, which moves nothing); here it charged nothing.
    payment = payment_refund(order_id=ORDER)
    assert (payment.status, payment.closed) == ("declined", True)
    assert not SandboxLedgerEntry.objects.filter(kind="refund").exists()
    assert events("payment.refunded") == 0
