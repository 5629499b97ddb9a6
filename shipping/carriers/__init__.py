"""The carrier interface and how settings choose an implementation."""

from __future__ import annotations

from functools import cache
from typing import Any, Protocol

from django.conf import settings
from django.utils.module_loading import import_string


class CarrierError(Exception):
    """Base of what a carrier raises."""


class CarrierRejected(CarrierError):
    """The carrier will not take this shipment (e.g. destination not served): permanent."""


class CarrierUnavailable(CarrierError):
    """A transient failure: the same call may succeed later."""


class Carrier(Protocol):
    """What ShopFlow needs of a carrier; `schedule` is idempotent by key."""

    def schedule(self, *, order_id: Any, address: dict[str, str], idempotency_key: str) -> str:
        """Book a pickup and return its tracking number."""
        ...

    def cancel(self, *, tracking_number: str) -> None:
        """Call the booking off; cancelling twice is harmless."""
        ...

    def find(self, *, idempotency_key: str) -> str | None:
        """The tracking number of a booking made under this key, if any (without booking)."""
        ...


@cache
def _carrier_class(path: str) -> type[Carrier]:
    return import_string(path)


def get_carrier() -> Carrier:
    """The carrier named by the SHIPPING_CARRIER setting (an import path)."""
    return _carrier_class(settings.SHIPPING_CARRIER)()
