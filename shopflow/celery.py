"""The Celery application: configured from Django settings, tasks autodiscovered."""

import os

from celery import Celery
from celery.signals import task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shopflow.settings")

app = Celery("shopflow")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def close_old_connections(**kwargs: object) -> None:
    """Before each task, drop database connections that broke or outlived CONN_MAX_AGE.

    With CELERY_DB_REUSE_MAX set, Celery no longer reconnects around every task;
    this does what Django does at each request, so a connection lost to a
    database restart costs one reconnect instead of failed tasks.
    """
    from django.db import close_old_connections as django_close_old_connections

    django_close_old_connections()
