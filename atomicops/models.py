"""No tables: one unmanaged model gives the admin an "atomicops" section and permissions.

The dashboard's data lives in Redis and in this process's script registry, so there is
nothing to store. The model exists because Django's admin index lists models, and
because permissions belong to a content type. Codenames:

* ``atomicops.view_dashboard``: see the dashboard (scripts, SHAs, server facts, locks);
* ``atomicops.load_scripts``: run the "load all scripts" action;
* ``atomicops.flush_scripts``: run the flush check, which empties the script cache.
"""

from __future__ import annotations

from django.db import models


class Dashboard(models.Model):
    """The admin's handle on atomicops' dashboard; never queried, has no table."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_dashboard", "Can view the atomicops dashboard"),
            ("load_scripts", "Can load all scripts onto the Redis server"),
            ("flush_scripts", "Can flush the script cache and run the flush check"),
        ]
        verbose_name = "scripts dashboard"
        verbose_name_plural = "scripts dashboard"

    def __str__(self) -> str:
        return "atomicops dashboard"
