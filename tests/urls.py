from django.contrib import admin
from django.urls import include, path

from tests.testapp import views

urlpatterns = [path("admin/", admin.site.urls)]

# The demo site (tests/test_demo_*.py).
urlpatterns += [path("demo/", include("demo_project.demo.urls"))]

# Rate limits (tests/test_ratelimit_views.py): /rl/<name>/ -> views.rl_<name>
urlpatterns += [
    path(f"rl/{name}/", getattr(views, f"rl_{name}"), name=f"rl-{name}")
    for name in (
        "user", "user_async", "ip", "header", "callable", "callable_async", "post_only",
        "sliding", "bucket", "stacked", "shared_a", "shared_b", "default_fail",
        "fail_closed", "fail_open", "default_fail_async", "service", "service_async",
    )
]  # fmt: skip
