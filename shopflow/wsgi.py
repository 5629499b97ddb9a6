"""WSGI entry point for gunicorn (the Procfile's `web`)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shopflow.settings")
application = get_wsgi_application()
