#!/usr/bin/env python
"""Runs the demo project by default (DJANGO_SETTINGS_MODULE=demo_project.settings)."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_project.settings")
    from demo_project.embedded import ensure_redis_url, ensure_rest_url

    ensure_redis_url()
    ensure_rest_url()  # DEMO_REST=1: over Upstash's REST API (docs/http.md)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
