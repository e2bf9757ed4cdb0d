"""The dashboard's per-minute chart: inline SVG drawn on the server, no JavaScript.

One small panel per series (calls, fallbacks, errors, refusals), each on its own scale:
on one scale a few errors would vanish under thousands of calls. Every bar carries a
``<title>`` (the browser's tooltip: minute and count), every panel a text summary, and
the page has the same numbers as a table for screen readers and text browsers. Every
piece of text goes through Django's escaping; numbers are formatted here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

from django.utils import timezone as django_timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from atomicops.ops.timeline import Minute, Timeline

__all__ = ["PANELS", "Panel", "minute_label", "render"]


@dataclass(frozen=True)
class Panel:
    series: str  # a Minute field
    title: str
    unit: str  # one of them, for the tooltips


PANELS = (
    Panel("calls", "Calls", "calls"),
    Panel("fallbacks", "NOSCRIPT fallbacks", "fallbacks"),
    Panel("errors", "Errors", "errors"),
    Panel("refused", "Rate-limit refusals", "refusals"),
)

# The viewBox, in CSS pixels at the size a panel is usually drawn (so text stays ~11px).
WIDTH, HEIGHT = 360, 118
LEFT, RIGHT, TOP, BOTTOM = 36, 4, 8, 96  # the plot area


def minute_label(start: int) -> str:
    """``HH:MM`` of a minute in the current time zone."""
    moment = datetime.fromtimestamp(start, tz=timezone.utc)
    return django_timezone.localtime(moment).strftime("%H:%M")


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 x 10^n that is at least ``value`` (a readable axis top)."""
    if value <= 1:
        return 1
    power: int = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power  # pragma: no cover


def _number(value: int) -> str:
    return f"{value:,}"


def _panel(panel: Panel, minutes: list[Minute]) -> SafeString:
    values = [getattr(minute, panel.series) for minute in minutes]
    total = sum(values)
    top = nice_ceiling(max(values, default=0))
    slot = (WIDTH - LEFT - RIGHT) / max(len(minutes), 1)
    height = BOTTOM - TOP
    parts = [
        format_html(
            '<line class="grid" x1="{}" y1="{}" x2="{}" y2="{}"/>', LEFT, y, WIDTH - RIGHT, y
        )
        for y in (TOP, TOP + height / 2, BOTTOM)
    ]
    parts.append(
        format_html(
            '<text class="axis" x="{}" y="{}" text-anchor="end">{}</text>',
            LEFT - 6,
            TOP + 4,
            _number(top),
        )
    )
    parts.append(
        format_html(
            '<text class="axis" x="{}" y="{}" text-anchor="end">0</text>', LEFT - 6, BOTTOM + 4
        )
    )
    for index, (minute, value) in enumerate(zip(minutes, values, strict=True)):
        if not value:
            continue
        bar = max(1.0, height * value / top)
        parts.append(
            format_html(
                '<rect class="bar bar-{}" x="{}" y="{}" width="{}" height="{}" data-minute="{}" '
                'data-value="{}"><title>{}: {} {}</title></rect>',
                panel.series,
                f"{LEFT + index * slot + 0.5:.1f}",
                f"{BOTTOM - bar:.1f}",
                f"{max(slot - 1, 1):.1f}",
                f"{bar:.1f}",
                minute.start,
                value,
                minute_label(minute.start),
                _number(value),
                panel.unit,
            )
        )
    if minutes:
        for index, anchor in (
            (0, "start"),
            (len(minutes) // 2, "middle"),
            (len(minutes) - 1, "end"),
        ):
            x = LEFT + index * slot + (slot if anchor == "end" else 0)
            parts.append(
                format_html(
                    '<text class="axis" x="{}" y="{}" text-anchor="{}">{}</text>',
                    f"{x:.1f}",
                    HEIGHT - 6,
                    anchor,
                    minute_label(minutes[index].start),
                )
            )
    peak = _number(max(values, default=0))
    label = f"{panel.title} per minute, last hour: {_number(total)} in all, at most {peak} a minute"
    return format_html(
        '<figure class="atomicops-chart" data-series="{}" data-total="{}">'
        '<figcaption><strong>{}</strong> <span class="quiet">{} in the last hour</span></figcaption>'
        '<svg viewBox="0 0 {} {}" role="img" aria-label="{}">'
        "<title>{}</title>{}</svg></figure>",
        panel.series,
        total,
        panel.title,
        _number(total),
        WIDTH,
        HEIGHT,
        label,
        label,
        mark_safe("".join(parts)),  # each part was built by format_html
    )


def render(timeline: Timeline) -> SafeString:
    """The four panels of ``timeline`` as one block of HTML with inline SVG."""
    panels = "".join(_panel(panel, timeline.minutes) for panel in PANELS)
    return format_html(
        '<div class="atomicops-charts">{}</div>', mark_safe(panels)
    )  # built by format_html
