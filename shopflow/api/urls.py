"""Routes under /api/: auth, the catalog and orders (schema and docs live in shopflow.urls)."""

from django.urls import include, path

from shopflow.api.auth import RegisterApi, TokenApi

urlpatterns = [
    path("auth/register/", RegisterApi.as_view(), name="auth-register"),
    path("auth/token/", TokenApi.as_view(), name="auth-token"),
    path("products/", include("inventory.api.urls")),
    path("orders/", include("orders.api.urls")),
    path("shipping/", include("shipping.api.urls")),
    path("analytics/", include("analytics.api.urls")),
]
