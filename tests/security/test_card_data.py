"""No card data reaches the database, the logs or the outbox: the payment token is all we keep."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from django.apps import apps
from django.db import connection

from inventory.services import product_create
from orders.models import Order
from outbox.models import OutboxEvent
from payments.models import Payment
from tests.api.conftest import ADDRESS, client_for, post_json
from tests.audit.conftest import InProcessShop

PAN = "4111111111111111"  # Visa's test number: passes Luhn like any real card
PAN_SPACED = "4111 1111 1111 1111"


def body_with_card_data_in_odd_places() -> dict:
    return {
        "items": [{"sku": "MUG-1", "quantity": 1, "card": PAN}],
        "payment_token": "tok_visa",
        "shipping_address": {**ADDRESS, "card_number": PAN_SPACED},
        "card_number": PAN,
        "card": {"number": PAN_SPACED, "cvc": "123", "exp_month": 12, "exp_year": 2030},
    }


@pytest.fixture
def every_log_line() -> Iterator[list[str]]:
    """Every record any logger emits meanwhile, at any level, formatted with its arguments."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Keep(level=logging.DEBUG)
    loggers = [logging.getLogger()] + [
        logger for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger) and not logger.propagate
    ]  # fmt: skip
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    yield lines
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


def tables_holding(*needles: str) -> list[str]:
    """Tables with a row whose text (every column) contains any of the needles."""
    found = []
    with connection.cursor() as cursor:
        for model in apps.get_models():
            table = connection.ops.quote_name(model._meta.db_table)
            for needle in needles:
                cursor.execute(f"SELECT 1 FROM {table} t WHERE t::text LIKE %s LIMIT 1",
                               [f"%{needle}%"])  # fmt: skip
                if cursor.fetchone():
                    found.append(model._meta.db_table)
    return found


@pytest.mark.django_db(transaction=True)
def test_card_data_in_odd_fields_is_stored_nowhere_logged_nowhere_and_never_in_the_outbox(
    monkeypatch, every_log_line
):
    # given
    shop = InProcessShop(monkeypatch)
    product_create(sku="MUG-1", name="Mug", price="9.95", stock=5)

    # when the order is placed and fulfilled all the way (saga, payment, e-mail)
    response = post_json(
        client_for(shop.customer), "/api/orders/", body_with_card_data_in_odd_places(),
        HTTP_IDEMPOTENCY_KEY="card-test-1",
    )  # fmt: skip
    shop.run_until_quiet()

    # then
    assert response.status_code == 201, response.content
    assert Order.objects.get().status == "confirmed"
    assert tables_holding(PAN, PAN_SPACED, "cvc") == []
    assert {"orders_order", "payments_payment"} <= set(tables_holding("tok_visa"))  # it looks
    assert not [e for e in OutboxEvent.objects.all() if PAN in str(e.payload) + str(e.headers)]
    assert not [line for line in every_log_line if PAN in line or PAN_SPACED in line]
    assert every_log_line, "the log capture saw nothing: it would miss card data too"
    assert list(Payment.objects.values_list("token", flat=True)) == ["tok_visa"]


@pytest.mark.django_db
@pytest.mark.parametrize("token", [PAN, PAN_SPACED, "4111-1111-1111-1111", f"tok_{PAN}"])
def test_a_card_number_sent_as_the_payment_token_is_refused_and_not_echoed(
    token, customer, mug, every_log_line
):
    response = post_json(
        client_for(customer), "/api/orders/", {**body_with_card_data_in_odd_places(),
                                               "payment_token": token},
    )  # fmt: skip

    assert response.status_code == 400
    assert response.json() == {
        "payment_token": ["Send your payment provider's token, never a card number."]
    }
    assert not Order.objects.exists()
    assert not [line for line in every_log_line if "1111" in line]


@pytest.mark.django_db
@pytest.mark.parametrize("token", ["tok_visa", "tok_4111111111111112", "tok_1NXc2x2eZvKYlo2C"])
def test_tokens_that_only_hold_digits_that_are_no_card_number_are_accepted(token, customer, mug):
    body = {**body_with_card_data_in_odd_places(), "payment_token": token}

    response = post_json(client_for(customer), "/api/orders/", body)

    assert response.status_code == 201
    assert Order.objects.get().payment_token == token
