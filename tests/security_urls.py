"""URLs of tests/test_security.py (``@pytest.mark.urls``)."""

from django.urls import path

from atomicops import metrics_view
from tests.testapp import security_views as views

urlpatterns = [
    path("drf/dispatch/", views.DispatchOrders.as_view()),
    path("drf/method/", views.MethodOrders.as_view()),
    path("drf/direct-dispatch/", views.DirectDispatchOrders.as_view()),
    path("drf/api-view/", views.api_orders),
    path("metrics", metrics_view),
    *(
        path(f"idem/{name}/", getattr(views, name))
        for name in ("private_headers", "wholly_private", "sized", "sized_short")
    ),
]
