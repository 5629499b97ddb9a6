"""`manage.py check` refuses step leases that a provider call could outlive."""

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError


def test_a_lease_longer_than_a_step_may_renew_it_is_refused(settings):
    settings.SAGA_STEP_LEASE_SECONDS = 30.0
    settings.SAGA_STEP_MAX_SECONDS = 10.0
    with pytest.raises(SystemCheckError, match=r"sagas\.E001"):
        call_command("check")


def test_the_default_lease_settings_pass(settings):
    call_command("check")
