"""The project's token authentication answers exactly as DRF's, with one plain query."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token

from shopflow.api.authentication import TokenAuthentication
from tests.api.conftest import client_for

pytestmark = pytest.mark.django_db


def _fields(instance):
    return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}


def test_a_token_gives_the_user_and_token_drfs_query_gives(customer):
    key = Token.objects.create(user=customer).key

    user, token = TokenAuthentication().authenticate_credentials(key)
    drf_user, drf_token = authentication.TokenAuthentication().authenticate_credentials(key)

    assert (type(user), type(token)) == (type(drf_user), type(drf_token))
    assert _fields(user) == _fields(drf_user)
    assert _fields(token) == _fields(drf_token)
    assert not user._state.adding and user._state.db == drf_user._state.db


def test_the_user_and_token_point_at_each_other_without_a_query(customer):
    key = Token.objects.create(user=customer).key

    with CaptureQueriesContext(connection) as queries:
        user, token = TokenAuthentication().authenticate_credentials(key)
        assert token.user is user
        assert user.auth_token is token

    assert len(queries) == 1


@pytest.mark.parametrize("key", ["no-such-token", "", "x" * 41, "caf\u00e9", "' OR '1'='1", "%s"])
def test_an_unknown_token_is_refused_as_drf_refuses_it(customer, key):
    Token.objects.create(user=customer)

    with pytest.raises(exceptions.AuthenticationFailed) as ours:
        TokenAuthentication().authenticate_credentials(key)
    with pytest.raises(exceptions.AuthenticationFailed) as drfs:
        authentication.TokenAuthentication().authenticate_credentials(key)

    assert ours.value.detail == drfs.value.detail == "Invalid token."


def test_an_inactive_users_token_is_refused_as_drf_refuses_it(customer):
    key = Token.objects.create(user=customer).key
    customer.is_active = False
    customer.save()

    with pytest.raises(exceptions.AuthenticationFailed) as ours:
        TokenAuthentication().authenticate_credentials(key)

    assert ours.value.detail == "User inactive or deleted."


def test_the_api_takes_a_token_and_refuses_a_wrong_one(customer):
    client = client_for(customer)
    assert client.get("/api/orders/").status_code == 200

    client.credentials(HTTP_AUTHORIZATION="Token wrong")
    response = client.get("/api/orders/")

    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid token."
    assert response["WWW-Authenticate"] == "Token"
