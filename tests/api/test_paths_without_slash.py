"""A path missing its trailing slash is a plain 404, never a redirect or a 500."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/api/orders", "/api/auth/register", "/api/products"])
def test_post_without_trailing_slash_is_404(path, settings):
    settings.DEBUG = True  # where Django would raise RuntimeError for APPEND_SLASH
    client = APIClient()
    client.force_authenticate(get_user_model().objects.create_user("ada"))
    response = client.post(path, {"items": []}, format="json")
    assert response.status_code == 404
