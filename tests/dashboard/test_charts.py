"""The SVG bar and column charts: one group per bar, lengths in proportion, text escaped."""

import xml.etree.ElementTree as ET

from shopflow.charts import Bar, bar_chart, column_chart
from tests.dashboard.pages import SVG, bars, series


def rect_width(group: ET.Element) -> float:
    return float(group.find(f"{SVG}rect").get("width"))


def rect_height(group: ET.Element) -> float:
    return float(group.find(f"{SVG}rect").get("height"))


def test_bar_lengths_are_in_proportion_to_their_values():
    # when
    chart = ET.fromstring(bar_chart([Bar("a", 4), Bar("b", 2), Bar("c", 0)], title="t"))
    # then
    a, b, c = bars(chart)
    assert rect_width(a) == 2 * rect_width(b) > 0
    assert rect_width(c) == 0


def test_column_heights_are_in_proportion_and_labels_sit_under_them():
    # when
    chart = ET.fromstring(column_chart([Bar("12:00", 3), Bar("12:01", 6)], title="t"))
    # then
    first, second = bars(chart)
    assert rect_height(second) == 2 * rect_height(first) > 0
    assert [t.text for t in second.findall(f"{SVG}text")] == ["6", "12:01"]


def test_a_chart_of_zeros_draws_empty_bars_without_dividing_by_zero():
    # when
    chart = ET.fromstring(column_chart([Bar("12:00", 0), Bar("12:01", 0)], title="t"))
    # then
    assert [rect_height(g) for g in bars(chart)] == [0, 0]


def test_labels_and_links_are_escaped():
    # when
    svg = bar_chart([Bar("<b>&", 1, url="/x/?a=1&b=2")], title='"quoted"')
    # then
    chart = ET.fromstring(svg)  # well-formed XML: nothing leaked unescaped
    assert chart.get("aria-label") == '"quoted"'
    assert series(chart) == {"<b>&": 1}
    assert chart.find(f"{SVG}a").get("href") == "/x/?a=1&b=2"


def test_alert_bars_carry_the_alert_class():
    # when
    chart = ET.fromstring(bar_chart([Bar("ok", 1), Bar("bad", 1, alert=True)], title="t"))
    # then
    assert [g.get("class") for g in bars(chart)] == ["bar", "bar alert"]
