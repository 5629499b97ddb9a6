"""Settings of the chaos test's web and worker processes: database connections as in production.

tests.settings opens a connection per request and per task, which no database
restart can hurt. Production keeps connections (CONN_MAX_AGE) and checks one
before use (CONN_HEALTH_CHECKS); that is the path a PostgreSQL restart must get
through, so the chaos test's processes run with it.
"""

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES, env

DATABASES = {
    "default": {
        **DATABASES["default"],
        "CONN_MAX_AGE": env.int("DB_CONN_MAX_AGE", default=60),
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {
            **DATABASES["default"].get("OPTIONS", {}),
            "connect_timeout": env.int("DB_CONNECT_TIMEOUT", default=5),
        },
    }
}
