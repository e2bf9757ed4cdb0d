"""The atomicops section of the admin: one dashboard, two actions, three permissions.

Registered on ``admin.site`` by admin autodiscovery, so ``INSTALLED_APPS +=
["atomicops"]`` and ``path("admin/", admin.site.urls)`` are all a project needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path

from atomicops.models import Dashboard
from atomicops.ops import dashboard as admin_views

# django-stubs makes ModelAdmin generic; Django itself cannot subscript it at runtime.
if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[Dashboard]
else:
    _ModelAdmin = admin.ModelAdmin


@admin.register(Dashboard)
class DashboardAdmin(_ModelAdmin):
    """No add/change/delete: the changelist URL is the dashboard itself."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(admin_views.VIEW_PERMISSION)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        # admin_view: login redirect for anonymous/non-staff users, CSRF, never_cache.
        wrap = self.admin_site.admin_view
        return [
            path("", wrap(self.changelist_view), name="atomicops_dashboard_changelist"),
            path("load/", wrap(self.load_view), name="atomicops_dashboard_load"),
            path("flush-check/", wrap(self.flush_view), name="atomicops_dashboard_flush_check"),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        return admin_views.dashboard(self, request)

    def load_view(self, request: HttpRequest) -> HttpResponse:
        return admin_views.load(self, request)

    def flush_view(self, request: HttpRequest) -> HttpResponse:
        return admin_views.flush(self, request)
