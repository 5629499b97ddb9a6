"""Staff API over the daily sales projection."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers
from rest_framework.permissions import IsAdminUser

from analytics.models import DailySales
from analytics.selectors import daily_sales_between


class DailySalesOutput(serializers.ModelSerializer):
    class Meta:
        model = DailySales
        fields = ("date", "orders_placed", "orders_confirmed", "orders_cancelled",
                  "orders_failed", "gross_revenue", "refunds")  # fmt: skip


class DateRangeInput(serializers.Serializer):
    # `from` is a Python keyword, hence the source mapping.
    from_ = serializers.DateField(required=False, source="start")
    to = serializers.DateField(required=False, source="end")

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields

    def validate(self, attrs: dict) -> dict:
        start, end = attrs.get("start"), attrs.get("end")
        if start and end and start > end:
            raise serializers.ValidationError({"from": ["'from' must not be after 'to'."]})
        return attrs


@extend_schema(
    parameters=[
        OpenApiParameter("from", str, description="first day, YYYY-MM-DD (included)"),
        OpenApiParameter("to", str, description="last day, YYYY-MM-DD (included)"),
    ]
)
class DailySalesApi(generics.ListAPIView):
    """`GET /api/analytics/daily/?from=&to=`: days with their sales figures, oldest first."""

    permission_classes = [IsAdminUser]
    serializer_class = DailySalesOutput

    def get_queryset(self) -> QuerySet[DailySales]:
        dates = DateRangeInput(data=self.request.query_params)
        dates.is_valid(raise_exception=True)
        return daily_sales_between(**dates.validated_data)
