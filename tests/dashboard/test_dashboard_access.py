"""Only staff see the dashboard; everyone else is sent to the admin login."""

import re

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

PAGE = reverse("admin-dashboard")
DATA = reverse("admin-dashboard-data")


@pytest.mark.parametrize("url", [PAGE, DATA])
def test_staff_get_the_dashboard(staff, url):
    # when
    response = staff.get(url)
    # then
    assert response.status_code == 200


@pytest.mark.parametrize("url", [PAGE, DATA])
def test_a_customer_is_sent_to_the_admin_login(client, django_user_model, url):
    # given
    client.force_login(django_user_model.objects.create_user("ada", password="pw"))
    # when
    response = client.get(url)
    # then
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('admin:login')}?next={url}"


@pytest.mark.parametrize("url", [PAGE, DATA])
def test_an_anonymous_visitor_is_sent_to_the_admin_login(client, url):
    # when
    response = client.get(url)
    # then
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('admin:login')}?next={url}"


def test_the_admin_index_links_to_the_dashboard(staff):
    # when
    response = staff.get(reverse("admin:index"))
    # then
    assert response.status_code == 200
    html = response.content.decode()
    assert re.search(rf'<a href="{PAGE}"[^>]*>Operator dashboard</a>', html)
    assert "Site administration" in html and 'id="content-main"' in html  # still the stock index
