"""Django's PostgreSQL backend with a health check that costs no round trip when all is well.

With CONN_HEALTH_CHECKS, Django checks a persistent connection before each
request's (and, through `shopflow.celery`, each task's) first query with a
`SELECT 1`: one round trip, ~0.1 ms of CPU between this process and
PostgreSQL, on every request and every task. A connection that PostgreSQL
closed (a restart, `pg_terminate_backend`, an idle timeout) is one whose
socket turned readable while it sat idle: the server's goodbye (an error
message, then end of file) is waiting there. So an idle connection with
nothing to read is taken as usable without asking the server; one with
something to read, in a transaction, or that psycopg already saw break, gets
Django's own check. A server that vanishes without closing its side (a host
lost with its network) is noticed by the first query instead, as with any
check made before it: the query fails, Django records the error, and the
next request or task drops the connection (`close_if_unusable_or_obsolete`).
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base
from psycopg.pq import TransactionStatus


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        if connection.info.transaction_status == TransactionStatus.IDLE and not _readable(
            connection.pgconn.socket
        ):
            return True
        return super().is_usable()


def _readable(fd: int) -> bool:
    """Whether `fd` has something to read now (no waiting)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))
