"""Benchmark settings: the production settings plus the bench app and its handler."""

from shopflow.settings import *  # noqa: F403
from shopflow.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench"]
# Measured as production runs: DEBUG records every query in memory.
DEBUG = False
