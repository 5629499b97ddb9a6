"""No placement body, however malformed, gets a 500 or writes anything unless it is valid."""

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from orders.models import IdempotencyKey, Order
from outbox.models import OutboxEvent
from tests.api.conftest import ADDRESS, client_for, post_json

pytestmark = pytest.mark.django_db

# Any text, lone surrogates and NUL included.
text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3),
    max_leaves=12,
)


def valid_or_junk(valid):
    return st.just(valid) | json_values


lines = st.lists(
    st.fixed_dictionaries(
        {
            "sku": valid_or_junk("MUG-1"),
            "quantity": st.integers(min_value=-5, max_value=1005) | json_values,
        }
    ),
    max_size=3,
)
addresses = st.fixed_dictionaries({name: valid_or_junk(value) for name, value in ADDRESS.items()})
bodies = (
    st.fixed_dictionaries(
        {
            "items": lines | json_values,
            "payment_token": valid_or_junk("tok_visa"),
            "shipping_address": addresses | json_values,
        }
    )
    | json_values
)


def written() -> tuple[int, int, int]:
    return Order.objects.count(), OutboxEvent.objects.count(), IdempotencyKey.objects.count()


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies)
def test_any_body_is_placed_or_refused_with_a_4xx_that_writes_nothing(customer, mug, body):
    # given
    before = written()

    # when
    response = post_json(client_for(customer), "/api/orders/", body, HTTP_IDEMPOTENCY_KEY="fuzz")

    # then
    event(f"status {response.status_code}")
    if response.status_code == 201:
        IdempotencyKey.objects.all().delete()  # the next example may use the key afresh
    else:
        assert response.status_code == 400, response.content
        assert written() == before
