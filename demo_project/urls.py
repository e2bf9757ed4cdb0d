from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.urls import include, path

import atomicops

urlpatterns = [
    path("admin/", admin.site.urls),
    # Prometheus metrics (docs/observability.md), for signed-in staff only: the demo may be
    # deployed, and the scrape shows what the site is doing.
    path("metrics", staff_member_required(atomicops.metrics_view), name="metrics"),
    path("", include("demo_project.demo.urls")),
]
