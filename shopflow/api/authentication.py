"""Token authentication: DRF's, with the token and its user read by one prepared-once query."""

from __future__ import annotations

from functools import cache
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection, models
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token


class TokenAuthentication(authentication.TokenAuthentication):
    """`Authorization: Token <key>`, as DRF's `TokenAuthentication`, same answers and errors.

    DRF builds and compiles `Token.objects.select_related("user").get(key=…)`
    on every request: ~0.8 ms of CPU, more than a placement's order statement.
    Here the same SELECT is written once and its row turned into the same two
    instances (`Model.from_db`, as the ORM does), where no column needs a
    converter (PostgreSQL); elsewhere DRF's own query runs.
    """

    def authenticate_credentials(self, key: str) -> tuple[Any, Token]:
        query = _token_query()
        if query is None:
            return super().authenticate_credentials(key)
        with connection.cursor() as cursor:
            cursor.execute(query.sql, [key])
            row = cursor.fetchone()
        if row is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        token = Token.from_db(connection.alias, query.token_names, row[: len(query.token_names)])
        user = query.user_model.from_db(
            connection.alias, query.user_names, row[len(query.token_names) :]
        )
        # Both sides of the one-to-one cached, as select_related leaves them.
        Token.user.field.set_cached_value(token, user)
        Token.user.field.remote_field.set_cached_value(user, token)
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return user, token


class _TokenQuery:
    """The SELECT of a token and its user, and the attribute names of its columns."""

    def __init__(self, user_model: type[models.Model]) -> None:
        self.user_model = user_model
        token_fields, user_fields = Token._meta.concrete_fields, user_model._meta.concrete_fields
        self.token_names = [f.attname for f in token_fields]
        self.user_names = [f.attname for f in user_fields]
        quote = connection.ops.quote_name
        token, user = quote(Token._meta.db_table), quote(user_model._meta.db_table)
        columns = [f"{token}.{quote(f.column)}" for f in token_fields]
        columns += [f"{user}.{quote(f.column)}" for f in user_fields]
        user_id, pk = quote(Token.user.field.column), quote(user_model._meta.pk.column)
        self.sql = (
            f"SELECT {', '.join(columns)} FROM {token}"
            f" INNER JOIN {user} ON {token}.{user_id} = {user}.{pk}"
            f" WHERE {token}.{quote(Token._meta.get_field('key').column)} = %s"
        )


@cache
def _token_query() -> _TokenQuery | None:
    """The query, where rows come back as the fields take them; None elsewhere."""
    user_model = get_user_model()
    fields = [*Token._meta.concrete_fields, *user_model._meta.concrete_fields]
    plain = connection.vendor == "postgresql" and not any(
        f.get_db_converters(connection) or connection.ops.get_db_converters(f.cached_col)
        for f in fields
    )
    return _TokenQuery(user_model) if plain else None
