"""The late-charge sweep refunds a known late charge first, however many closed payments wait."""

import uuid
from decimal import Decimal

import pytest

from payments.gateways.sandbox import SandboxGateway
from payments.models import Payment
from payments.services import payments_late_charges_refund

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_late_charge_is_refunded_though_many_closed_payments_had_none():
    # given: a gateway outage left 100 payments closed with no charge (compensation looked)
    Payment.objects.bulk_create(
        Payment(order_id=uuid.uuid4(), amount=Decimal("5.00"), currency="USD", token="tok_visa",
                idempotency_key=f"k-{i}", closed=True)
        for i in range(100)
    )  # fmt: skip
    # and then one charge landed late and its immediate refund failed: closed and captured
    charge = SandboxGateway().charge(
        amount=Decimal("9.00"), currency="USD", token="tok_visa", idempotency_key="late"
    )
    late = Payment.objects.create(
        order_id=uuid.uuid4(), amount=Decimal("9.00"), currency="USD", token="tok_visa",
        idempotency_key="late", closed=True, status="captured", provider_ref=charge.reference,
    )  # fmt: skip
    # when: beat's sweep runs, minute after minute
    for _ in range(3):
        payments_late_charges_refund()
    # then
    assert Payment.objects.get(pk=late.pk).status == Payment.Status.REFUNDED
