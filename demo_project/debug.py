"""What Django's error pages may show about the demo, when DEBUG is on.

DEBUG is off unless asked for (``bin/demo`` asks, for a site on 127.0.0.1). Even then:

* a request for a Host that is not allowed gets a short 400, never the debug page: a
  page on another site can make a browser send one to 127.0.0.1 (DNS rebinding) and read
  the answer;
* every URL on a debug page (settings, the environment, a frame's variables) is shown
  with its password masked, since REDIS_URL (and the like) are not names Django hides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import DisallowedHost
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

BAD_HOST = "Bad Request (400): this Host is not allowed."


class RedactingFilter(SafeExceptionReporterFilter):
    """Django's filter, plus: any string holding ``://`` is shown through redact_url."""

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        value = super().cleanse_setting(key, value)
        if isinstance(value, str) and "://" in value:
            # Imported here: Django's logging set-up imports this module (mail_admins'
            # reporter), before the apps, and atomicops' package imports them all.
            from atomicops.engine.redaction import redact_url

            return redact_url(value)
        return value

    def get_traceback_frame_variables(self, request: Any, tb_frame: Any) -> Any:
        return [
            (name, self._cleanse_value(name, value))
            for name, value in super().get_traceback_frame_variables(request, tb_frame)
        ]

    def _cleanse_value(self, name: str, value: Any) -> Any:
        if isinstance(value, str):
            return self.cleanse_setting(name, value)
        if isinstance(value, Mapping):  # a settings dict, ATOMICOPS' read-only view
            try:
                return self.cleanse_setting(name, dict(value))
            except Exception:  # a mapping that cannot be copied: show it as Django would
                return value
        return value


class QuietHostReporter(ExceptionReporter):
    """The debug page, except for a disallowed Host, which gets one line."""

    def get_traceback_html(self) -> str:
        if isinstance(self.exc_value, DisallowedHost):
            return BAD_HOST
        return super().get_traceback_html()

    def get_traceback_text(self) -> str:
        if isinstance(self.exc_value, DisallowedHost):
            return BAD_HOST
        return super().get_traceback_text()
