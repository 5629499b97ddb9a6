"""Analytics routes, mounted at /api/analytics/."""

from django.urls import path

from analytics.api.views import DailySalesApi

urlpatterns = [path("daily/", DailySalesApi.as_view(), name="analytics-daily")]
