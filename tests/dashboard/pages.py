"""Reading dashboard pages: their inline SVG charts, parsed."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

SVG = "{http://www.w3.org/2000/svg}"


def charts(html: str) -> dict[str, ET.Element]:
    """Every inline SVG chart of a page, parsed, by its aria-label."""
    found = re.findall(r"<svg [^>]*class=\"chart .*?</svg>", html, flags=re.S)
    parsed = [ET.fromstring(svg) for svg in found]
    return {svg.get("aria-label"): svg for svg in parsed}


def bars(chart: ET.Element) -> list[ET.Element]:
    return chart.findall(f".//{SVG}g")


def series(chart: ET.Element) -> dict[str, int]:
    """A chart's bars as {label: value}, in drawing order."""
    return {g.get("data-label"): int(g.get("data-value")) for g in bars(chart)}
