"""The payments admin: read-only payments with a refund action, and a read-only sandbox ledger."""

import uuid
from decimal import Decimal

import pytest
from django.urls import reverse

from payments.gateways import PaymentDeclined
from payments.models import Payment, SandboxLedgerEntry
from payments.services import payment_charge

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_wake_up")]

PAYMENTS = reverse("admin:payments_payment_changelist")
LEDGER = reverse("admin:payments_sandboxledgerentry_changelist")


def charged(token: str = "tok_visa") -> Payment:
    order_id = uuid.uuid4()
    return payment_charge(
        order_id=order_id, amount=Decimal("19.90"), currency="USD", token=token,
        idempotency_key=f"saga:{order_id}:charge_payment",
    )  # fmt: skip


def declined() -> Payment:
    with pytest.raises(PaymentDeclined):
        charged("tok_chargeDeclined")
    return Payment.objects.get(status="declined")


def refund(client, *payments: Payment):
    data = {"action": "refund", "_selected_action": [str(p.pk) for p in payments]}
    response = client.post(PAYMENTS, data, follow=True)
    return response, " ".join(str(m) for m in response.context["messages"])


def test_the_refund_action_refunds_a_captured_payment_once(staff):
    payment = charged()
    # when: refunded twice over
    _, said = refund(staff, payment)
    refund(staff, payment)
    # then
    assert "refunded" in said
    payment.refresh_from_db()
    assert payment.status == "refunded"
    entry = SandboxLedgerEntry.objects.get(kind="refund")
    assert (entry.charge_reference, entry.amount) == (payment.provider_ref, payment.amount)


def test_the_refund_action_passes_over_payments_that_were_not_captured(staff):
    payment = declined()
    _, said = refund(staff, payment)
    assert "only a captured payment can be refunded" in said
    assert Payment.objects.get(pk=payment.pk).status == "declined"
    assert not SandboxLedgerEntry.objects.filter(kind="refund").exists()


def test_a_refund_the_gateway_fails_is_reported_and_the_payment_stays_captured(staff):
    payment = charged("tok_refundFlaky")
    _, said = refund(staff, payment)
    assert "refund failed" in said
    assert Payment.objects.get(pk=payment.pk).status == "captured"


def test_payment_pages_render_read_only(staff):
    payment = charged()
    assert staff.get(PAYMENTS).status_code == 200
    page = staff.get(reverse("admin:payments_payment_change", args=[payment.pk]))
    assert page.status_code == 200 and payment.provider_ref in page.text
    assert 'name="_save"' not in page.text


def test_the_sandbox_ledger_can_be_read_and_never_written(staff):
    payment = charged()
    entry = SandboxLedgerEntry.objects.get(reference=payment.provider_ref)
    listed = staff.get(LEDGER)
    assert listed.status_code == 200 and entry.reference in listed.text
    change = reverse("admin:payments_sandboxledgerentry_change", args=[entry.pk])
    assert 'name="_save"' not in staff.get(change).text
    assert staff.post(change, {"amount": "0.01"}).status_code == 403
    assert staff.get(reverse("admin:payments_sandboxledgerentry_add")).status_code == 403
    delete = reverse("admin:payments_sandboxledgerentry_delete", args=[entry.pk])
    assert staff.post(delete, {"post": "yes"}).status_code == 403
    entry.refresh_from_db()
    assert entry.amount == Decimal("19.90")
