#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shopflow.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # Settings that refuse to start (DEBUG=false without a real SECRET_KEY) say why
        # in one line, not at the end of a traceback.
        sys.exit(f"ImproperlyConfigured: {exc}")


if __name__ == "__main__":
    main()
