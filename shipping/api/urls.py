from django.urls import path

from shipping.api.views import CarrierWebhookApi

urlpatterns = [
    path("carrier-webhook/", CarrierWebhookApi.as_view(), name="carrier-webhook"),
]
