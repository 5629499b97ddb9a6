"""Bar charts drawn on the server as inline SVG: no JavaScript library, no CDN, works offline.

Each bar is a `<g class="bar">` carrying its label and value as data attributes,
so the page's CSS colours it and a test reads the series without parsing geometry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

WIDTH = 460
LABEL_WIDTH = 150  # a bar chart's label column (handler and status names)
VALUE_WIDTH = 50  # room after the longest bar for its value
ROW_HEIGHT = 22
COLUMN_CHART_HEIGHT = 150
AXIS_HEIGHT = 18  # a column chart's labels under the baseline
HEADROOM = 14  # a column chart's room for the value above the tallest column


@dataclasses.dataclass(frozen=True)
class Bar:
    """One bar: what it counts, how many, where a click leads, and whether it needs attention."""

    label: str
    value: int
    url: str = ""
    alert: bool = False


def bar_chart(bars: Sequence[Bar], *, title: str) -> SafeString:
    """Horizontal bars, one row per bar, labels on the left and values after the bars."""
    top = max((bar.value for bar in bars), default=0)
    rows = []
    for i, bar in enumerate(bars):
        y = i * ROW_HEIGHT
        length = _scaled(bar.value, top, WIDTH - LABEL_WIDTH - VALUE_WIDTH)
        shapes = [
            _text(LABEL_WIDTH - 6, y + 15, bar.label, anchor="end"),
            _rect(LABEL_WIDTH, y + 3, length, ROW_HEIGHT - 6),
            _text(LABEL_WIDTH + length + 4, y + 15, bar.value),
        ]
        rows.append(_bar(bar, shapes))
    return _svg(title, "bar-chart", len(bars) * ROW_HEIGHT + 4, rows)


def column_chart(bars: Sequence[Bar], *, title: str) -> SafeString:
    """Vertical columns side by side (a time series), labels under the baseline."""
    baseline = COLUMN_CHART_HEIGHT - AXIS_HEIGHT
    step = WIDTH / max(len(bars), 1)
    top = max((bar.value for bar in bars), default=0)
    columns = [
        format_html(
            '<line class="baseline" x1="0" x2="{}" y1="{}" y2="{}"/>', WIDTH, baseline, baseline
        )
    ]
    for i, bar in enumerate(bars):
        height, middle = _scaled(bar.value, top, baseline - HEADROOM), round((i + 0.5) * step, 1)
        shapes = [
            _rect(round(i * step + 3, 1), baseline - height, round(step - 6, 1), height),
            _text(middle, baseline - height - 3, bar.value or "", anchor="middle"),
            _text(middle, COLUMN_CHART_HEIGHT - 4, bar.label, anchor="middle", css="axis"),
        ]
        columns.append(_bar(bar, shapes))
    return _svg(title, "column-chart", COLUMN_CHART_HEIGHT, columns)


def _scaled(value: int, top: int, span: float) -> float:
    """Length of a bar worth `value` when the largest is `top` and fills `span`."""
    return round(span * value / top, 1) if top else 0


def _rect(x: float, y: float, width: float, height: float) -> SafeString:
    return format_html('<rect x="{}" y="{}" width="{}" height="{}"/>', x, y, width, height)


def _text(x: float, y: float, text: object, anchor: str = "start", css: str = "") -> SafeString:
    return format_html(
        '<text x="{}" y="{}" text-anchor="{}" class="{}">{}</text>', x, y, anchor, css, text
    )


def _bar(bar: Bar, shapes: list[SafeString]) -> SafeString:
    group = format_html(
        '<g class="{}" data-label="{}" data-value="{}"><title>{}: {}</title>{}</g>',
        "bar alert" if bar.alert else "bar",
        bar.label,
        bar.value,
        bar.label,
        bar.value,
        _joined(shapes),
    )
    return format_html('<a href="{}">{}</a>', bar.url, group) if bar.url else group


def _svg(title: str, kind: str, height: int, parts: list[SafeString]) -> SafeString:
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" class="chart {}" role="img" aria-label="{}"'
        ' width="{}" height="{}" viewBox="0 0 {} {}">{}</svg>',
        kind,
        title,
        WIDTH,
        height,
        WIDTH,
        height,
        _joined(parts),
    )


def _joined(parts: list[SafeString]) -> SafeString:
    return format_html_join("", "{}", ((part,) for part in parts))
