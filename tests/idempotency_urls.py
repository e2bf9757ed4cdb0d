"""URLs of tests/test_idempotency*.py (``@pytest.mark.urls``), apart from the shared ones."""

from django.urls import path

from tests.testapp import idempotency_views as views

urlpatterns = [
    path(f"idem/{name}/", getattr(views, name), name=f"idem-{name}")
    for name in (
        "create", "create_async", "required", "short_lease", "short_lease_async", "killable",
        "template", "big", "stream", "binary", "echo_json",
    )
]  # fmt: skip
if views.APIView is not None:
    urlpatterns.append(path("idem/drf/", views.OrderAPI.as_view(), name="idem-drf"))
