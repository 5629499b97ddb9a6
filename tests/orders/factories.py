"""factory_boy factories for the orders context."""

import factory
from django.contrib.auth import get_user_model

from orders.services import LineRequest, order_place

ADDRESS = {
    "name": "Ada",
    "line1": "1 Main St",
    "city": "Springfield",
    "postal_code": "12345",
    "country": "US",
}


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"customer{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("pw-123456!")


def order_placed(customer, quantities: dict[str, int]):
    """A pending order placed through the service, `quantities` by SKU."""
    return order_place(
        customer=customer,
        lines=[LineRequest(sku, quantity) for sku, quantity in quantities.items()],
        payment_token="tok_visa",
        shipping_address=ADDRESS,
    )
