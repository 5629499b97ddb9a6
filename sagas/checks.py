"""System checks of the saga engine (`manage.py check`)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register


@register()
def step_lease_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """A step's lease must be renewable while its provider call runs (sagas/fencing.py)."""
    lease, longest = settings.SAGA_STEP_LEASE_SECONDS, settings.SAGA_STEP_MAX_SECONDS
    if lease > 0 and longest >= lease:
        return []
    return [
        Error(
            f"SAGA_STEP_LEASE_SECONDS ({lease:g}) must be positive and at most "
            f"SAGA_STEP_MAX_SECONDS ({longest:g}): a provider call would lose its step's "
            "lease while it runs, and another attempt would take the step.",
            hint="Raise SAGA_STEP_MAX_SECONDS above the slowest provider call you allow.",
            id="sagas.E001",
        )
    ]
