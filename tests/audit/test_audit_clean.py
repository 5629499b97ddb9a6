"""A shop whose orders ended in every possible way passes every check."""

import pytest
from django.core.management import call_command

from payments.models import Payment
from shopflow.audit import CHECKS, audit_run

pytestmark = pytest.mark.django_db


def test_a_quiet_shop_with_every_kind_of_order_passes_every_check(shop):
    # given every outcome an order can have
    statuses = {name: shop.reloaded(name).status for name in
                ("confirmed", "shipped", "delivered", "declined", "unshippable",
                 "out_of_stock", "cancelled")}  # fmt: skip
    assert statuses == {
        "confirmed": "confirmed", "shipped": "shipped", "delivered": "delivered",
        "declined": "failed", "unshippable": "failed", "out_of_stock": "failed",
        "cancelled": "cancelled",
    }  # fmt: skip
    assert Payment.objects.get(order_id=shop.cancelled.pk).status == "refunded"

    # when
    report = audit_run()

    # then
    assert report.ok, [c.as_dict() for c in report.failed]
    assert len(report.checks) == len(CHECKS) >= 12


def test_the_command_says_all_checks_passed_in_one_line(shop, capsys):
    call_command("audit")

    assert capsys.readouterr().out.strip() == f"all {len(CHECKS)} checks passed"
