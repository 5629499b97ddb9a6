"""Production settings: `check --deploy` is clean, no secret has a production default."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import override_settings

from shipping.webhooks import signature_for, signature_is_valid
from tests.conftest import ROOT

# Variables a developer's shell or .env could set that would change what is checked.
CLEARED = (
    "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "CARRIER_WEBHOOK_SECRET", "SECURE_SSL_REDIRECT",
    "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS", "TRUST_X_FORWARDED_PROTO",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "DJANGO_SETTINGS_MODULE",
)  # fmt: skip


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    """`manage.py` with production settings (shopflow.settings) and this environment."""
    base = {k: v for k, v in os.environ.items() if k not in CLEARED}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def production(**overrides: str) -> dict[str, str]:
    return {
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "shop.example.com",
        "CARRIER_WEBHOOK_SECRET": secrets.token_hex(32),
        **overrides,
    }


def test_check_deploy_is_clean_for_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **production())

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_warns_about_a_missing_carrier_webhook_secret():
    env = production()
    del env["CARRIER_WEBHOOK_SECRET"]

    result = manage("check", "--deploy", "--fail-level", "WARNING", **env)

    assert result.returncode != 0
    assert "shipping.W001" in result.stderr


@pytest.mark.parametrize("key", [None, "dev-insecure-shopflow-secret-key-change-me", ""])
def test_debug_false_without_a_real_secret_key_refuses_to_start_in_one_line(key):
    env = production()
    if key is None:
        del env["SECRET_KEY"]
    else:
        env["SECRET_KEY"] = key

    result = manage("check", **env)

    assert result.returncode == 1
    assert result.stderr.strip() == (
        "ImproperlyConfigured: DEBUG=false needs a real SECRET_KEY in the environment"
    )


@override_settings(CARRIER_WEBHOOK_SECRET="")
def test_without_a_webhook_secret_no_signature_is_valid_not_even_one_made_with_no_key():
    body = b'{"event_id": "e1"}'

    assert not signature_is_valid(body, signature_for(body, secret=""))
    assert not signature_is_valid(body, "sha256=" + "0" * 64)


@pytest.mark.django_db
@override_settings(SEED_DEMO_USERS=False)
def test_seed_demo_adds_no_user_with_a_published_password_where_demo_users_are_off(capsys):
    call_command("seed_demo")

    assert not get_user_model().objects.exists()
    assert "users: none" in capsys.readouterr().out


PRODUCTION_HTTPS = {
    "SECURE_SSL_REDIRECT": True,
    "SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https"),
    "SECURE_HSTS_SECONDS": 31_536_000,
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
    "SECURE_HSTS_PRELOAD": True,
    "SESSION_COOKIE_SECURE": True,
}


@pytest.mark.django_db
@override_settings(**PRODUCTION_HTTPS)
def test_production_redirects_plain_http_to_https_but_not_probes_and_scrapers(client):
    # when
    api = client.get("/api/products/")
    health = client.get("/healthz")
    metrics = client.get("/metrics")
    behind_tls = client.get("/api/products/", HTTP_X_FORWARDED_PROTO="https")

    # then
    assert (api.status_code, api["Location"]) == (301, "https://testserver/api/products/")
    assert health.status_code in (200, 503) and metrics.status_code == 200
    assert behind_tls.status_code == 200
    assert behind_tls["Strict-Transport-Security"] == (
        "max-age=31536000; includeSubDomains; preload"
    )
