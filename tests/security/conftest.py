"""The API tests' callers and catalog, for the security tests."""

from tests.api.conftest import customer, fresh_throttle_history, mug, other_customer, staff

__all__ = ["customer", "fresh_throttle_history", "mug", "other_customer", "staff"]
