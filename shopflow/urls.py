"""Top-level URLs: admin (and its operator dashboard), the API under /api/, health and metrics."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from outbox import views as outbox_views
from shopflow import dashboard

api_patterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("", include("shopflow.api.urls")),
]

urlpatterns = [
    path("admin/dashboard/", include(dashboard.urlpatterns)),  # before the admin's catch-all
    path("admin/", admin.site.urls),
    path("api/", include(api_patterns)),
    path("healthz", outbox_views.healthz, name="healthz"),
    path("metrics", outbox_views.metrics, name="metrics"),
]
