"""Settings for the test suite: PostgreSQL and Redis, plus the probe app."""

import atexit
import os
import shutil
import tempfile

from shopflow.settings import *  # noqa: F403
from shopflow.settings import (
    INSTALLED_APPS,
    broker_transport_options,
    env,
    postgres_binding,
    postgres_engine,
    redis_broker_transport,
)

DATABASES = {
    "default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/shopflow")
}
DATABASES["default"]["CONN_MAX_AGE"] = 0
postgres_engine(DATABASES["default"])  # as in production
postgres_binding(DATABASES["default"].setdefault("OPTIONS", {}))  # as in production
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="redis://127.0.0.1:6379/15")
CELERY_BROKER_TRANSPORT_OPTIONS = broker_transport_options(CELERY_BROKER_URL)  # as in production
CELERY_BROKER_TRANSPORT = redis_broker_transport(CELERY_BROKER_URL)  # as in production
REDIS_URL = env.str("REDIS_URL", default=CELERY_BROKER_URL)
CACHES = {"default": {"BACKEND": "shopflow.cache.RedisCache", "LOCATION": REDIS_URL}}
INSTALLED_APPS = [*INSTALLED_APPS, "tests.probe"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# django-axes refuses log-ins without a request (the test client's `login()`); the
# lockout tests (tests/security) turn it on for themselves.
AXES_ENABLED = False
# Workers send through locmem unless a test hands them SHOPFLOW_TEST_EMAIL_URL (an SMTP
# server it runs itself); a developer's EMAIL_URL from .env must never reach tests.
if "SHOPFLOW_TEST_EMAIL_URL" in os.environ:
    vars().update(env.email_url("SHOPFLOW_TEST_EMAIL_URL"))
else:
    EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# Short enough that crash-recovery tests finish quickly; overridable per worker.
OUTBOX_LEASE_SECONDS = env.float("OUTBOX_LEASE_SECONDS", default=3.0)
OUTBOX_BACKOFF_BASE = env.float("OUTBOX_BACKOFF_BASE", default=0.05)
OUTBOX_BACKOFF_MAX = env.float("OUTBOX_BACKOFF_MAX", default=0.5)
OUTBOX_POLL_INTERVAL = env.float("OUTBOX_POLL_INTERVAL", default=0.2)

# One metrics directory per test run, so concurrent runs never add up each other's
# counters; the workers a run spawns inherit it through the environment. Set here,
# before anything imports prometheus_client.
if "SHOPFLOW_TEST_METRICS_DIR" not in os.environ:
    os.environ["SHOPFLOW_TEST_METRICS_DIR"] = tempfile.mkdtemp(prefix="shopflow-metrics-")
    atexit.register(shutil.rmtree, os.environ["SHOPFLOW_TEST_METRICS_DIR"], ignore_errors=True)
PROMETHEUS_MULTIPROC_DIR = os.environ["SHOPFLOW_TEST_METRICS_DIR"]
os.environ["PROMETHEUS_MULTIPROC_DIR"] = PROMETHEUS_MULTIPROC_DIR
# Sagas retry and recover fast in tests; the production defaults are in shopflow/settings.py.
SAGA_STEP_LEASE_SECONDS = env.float("SAGA_STEP_LEASE_SECONDS", default=3.0)
SAGA_BACKOFF_BASE = env.float("SAGA_BACKOFF_BASE", default=0.05)
SAGA_BACKOFF_MAX = env.float("SAGA_BACKOFF_MAX", default=0.4)
SAGA_WAKE_GRACE_SECONDS = env.float("SAGA_WAKE_GRACE_SECONDS", default=1.0)
SAGA_WATCHDOG_INTERVAL = env.float("SAGA_WATCHDOG_INTERVAL", default=0.2)
# The beat schedule was built from the production intervals; a test beat runs at these.
CELERY_BEAT_SCHEDULE = {
    **CELERY_BEAT_SCHEDULE,  # noqa: F405
    "drain-outbox": {"task": "outbox.drain_outbox", "schedule": OUTBOX_POLL_INTERVAL},
    "saga-watchdog": {"task": "sagas.watchdog", "schedule": SAGA_WATCHDOG_INTERVAL},
}
