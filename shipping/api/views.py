"""The carrier webhook endpoint (CONTRACT §3)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from shipping.services import UnknownTrackingNumber
from shipping.webhooks import carrier_event_apply, signature_is_valid


class CarrierEventInput(serializers.Serializer):
    event_id = serializers.CharField(max_length=100)
    tracking_number = serializers.CharField(max_length=64)
    status = serializers.ChoiceField(choices=["shipped", "delivered"])
    occurred_at = serializers.DateTimeField(required=False, allow_null=True)


class CarrierWebhookApi(APIView):
    """Carrier status updates, signed with HMAC-SHA256 of the raw body."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    parser_classes = [JSONParser]
    throttle_classes: list = []

    @extend_schema(
        request=CarrierEventInput,
        responses={
            200: OpenApiResponse(description="applied, or already applied"),
            400: OpenApiResponse(description="malformed body"),
            401: OpenApiResponse(description="missing or wrong signature"),
            404: OpenApiResponse(description="unknown tracking number"),
            409: OpenApiResponse(description="a status the shipment cannot take"),
        },
    )
    def post(self, request: Request) -> Response:
        # Read the raw body before DRF parses it: the signature covers the bytes.
        body = request._request.body
        if not signature_is_valid(body, request.headers.get("X-Carrier-Signature")):
            # A plain 401: with no authenticator DRF would turn AuthenticationFailed into 403.
            return Response({"detail": "Missing or invalid carrier signature."}, status=401)
        data = CarrierEventInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            applied = carrier_event_apply(**data.validated_data)
        except UnknownTrackingNumber:
            raise exceptions.NotFound("No shipment has this tracking number.") from None
        return Response({"status": "applied" if applied else "duplicate"})
