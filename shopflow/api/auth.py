"""Customer sign-up and token log-in: `POST /api/auth/register/` and `/api/auth/token/`."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate, get_user_model, password_validation
from django.contrib.auth.signals import user_logged_in
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from shopflow.api.fields import StrictCharField
from shopflow.api.throttling import AuthRateThrottle

USERNAME_TAKEN = "A user with that username already exists."


class UsernameTaken(Exception):
    """Another account already has this username (compared case-insensitively)."""


def user_register(*, username: str, email: str, password: str) -> Any:
    """Create a customer account; raises `UsernameTaken` or Django's ValidationError."""
    User = get_user_model()
    password_validation.validate_password(password, User(username=username, email=email))
    if User.objects.filter(username__iexact=username).exists():
        raise UsernameTaken(username)
    try:
        with transaction.atomic():
            return User.objects.create_user(username=username, email=email, password=password)
    except IntegrityError as exc:  # a concurrent sign-up took the name first
        raise UsernameTaken(username) from exc


class RegisterInput(serializers.Serializer):
    username = StrictCharField(max_length=150, validators=[UnicodeUsernameValidator()])
    email = serializers.EmailField(max_length=254)
    password = StrictCharField(max_length=128, trim_whitespace=False, write_only=True)


class UserOutput(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.EmailField()


class TokenInput(serializers.Serializer):
    username = StrictCharField(max_length=150)
    password = StrictCharField(max_length=128, trim_whitespace=False, write_only=True)


class TokenOutput(serializers.Serializer):
    token = serializers.CharField()


class RegisterApi(APIView):
    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_classes = (AuthRateThrottle,)

    @extend_schema(request=RegisterInput, responses={201: UserOutput}, auth=[])
    def post(self, request: Request) -> Response:
        payload = RegisterInput(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            user = user_register(**payload.validated_data)
        except UsernameTaken as exc:
            raise serializers.ValidationError({"username": [USERNAME_TAKEN]}) from exc
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"password": list(exc.messages)}) from exc
        return Response(UserOutput(user).data, status=status.HTTP_201_CREATED)


class TokenApi(APIView):
    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_classes = (AuthRateThrottle,)

    @extend_schema(
        request=TokenInput,
        responses={
            200: TokenOutput,
            400: OpenApiResponse(description="Wrong username or password"),
            429: OpenApiResponse(description="Too many failed log-ins from this client"),
        },
        auth=[],
    )
    def post(self, request: Request) -> Response:
        payload = TokenInput(data=request.data)
        payload.is_valid(raise_exception=True)
        # The Django request: django-axes marks a locked-out log-in on it, and its
        # middleware answers 429 (shopflow.api.throttling.login_lockout_response).
        user = authenticate(request=request._request, **payload.validated_data)
        if user is None:
            raise serializers.ValidationError(
                {"non_field_errors": ["Unable to log in with provided credentials."]}
            )
        # A token log-in is a log-in: last_login moves, and django-axes forgets the failures.
        user_logged_in.send(sender=type(user), request=request._request, user=user)
        token, _ = Token.objects.get_or_create(user=user)
        return Response(TokenOutput({"token": token.key}).data)
