"""The Celery application: configured from Django settings, tasks autodiscovered."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shopflow.settings")

app = Celery("shopflow")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
