"""Order routes, mounted at /api/orders/."""

from django.urls import path

from orders.api.views import OrderCancelApi, OrderDetailApi, OrderEventsApi, OrderListApi

# `order_id` is matched as text and parsed in the view, so a malformed id gets
# the API's JSON 404 rather than the resolver's HTML page.
urlpatterns = [
    path("", OrderListApi.as_view(), name="order-list"),
    path("<str:order_id>/", OrderDetailApi.as_view(), name="order-detail"),
    path("<str:order_id>/events/", OrderEventsApi.as_view(), name="order-events"),
    path("<str:order_id>/cancel/", OrderCancelApi.as_view(), name="order-cancel"),
]
