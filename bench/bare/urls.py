"""The project's URLs plus the baseline at /bench/bare/ (bench settings only)."""

from django.urls import path

from bench.bare.views import BareInsertApi
from shopflow.urls import urlpatterns as shopflow_urlpatterns

urlpatterns = [
    *shopflow_urlpatterns,
    path("bench/bare/", BareInsertApi.as_view(), name="bench-bare-insert"),
]
