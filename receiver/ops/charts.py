"""Charts for the dashboard, as SVG written here: no script, no style attribute.

The pages' Content-Security-Policy allows styles and scripts from the server's own files
only. A charting library's SVG carries its own `<style>` element and style attributes (and
pygal's default output loads a script from a remote host): inline in the page the CSP
blocks those, and served as an image it would lose the console's colours (light and dark)
and the hover titles. These two charts are a few rectangles and lines, drawn here with
classes styled by console.css, every text escaped by markupsafe, each chart with a
title and a description for screen readers and its numbers in a table beside it.
"""

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from markupsafe import Markup, escape

# Hourly bars: 24 of them in a viewBox narrow enough to stay legible at 400 px.
BAR_W, GAP, PLOT_H, TOP = 11, 2, 70, 16
# Duration ticks (seconds) for the log scale.
TICKS = (
    (1, "1 s"),
    (10, "10 s"),
    (60, "1 min"),
    (600, "10 min"),
    (3600, "1 h"),
    (36000, "10 h"),
    (86400, "1 d"),
)


def _attrs(**values: object) -> str:
    """Attributes from our own numbers and names (escaped all the same)."""
    return " ".join(f'{k.rstrip("_").replace("_", "-")}="{escape(v)}"' for k, v in values.items())


def _svg(width: int, height: int, title: str, desc: str, body: Iterable[str], ident: str):
    head = _attrs(
        role="img",
        class_="chart",
        viewBox=f"0 0 {width} {height}",
        aria_labelledby=f"{ident}-t {ident}-d",
        id=ident,
    )
    ident = escape(ident)
    return Markup(
        f'<svg {head}><title id="{ident}-t">{escape(title)}</title>'
        f'<desc id="{ident}-d">{escape(desc)}</desc>{"".join(body)}</svg>'
    )


def hours_of(now: datetime, count: int = 24) -> list[str]:
    """Return the keys (`2026-11-21T05`) of the last `count` hours, oldest first."""
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=count - 1)
    return [(start + timedelta(hours=i)).strftime("%Y-%m-%dT%H") for i in range(count)]


def hourly(label: str, hours: Sequence[str], counts: dict[str, tuple[int, int]], ident: str):
    """Draw finished and failed jobs per hour: a grey bar per hour, its failed part red."""
    peak = max([finished for finished, _ in counts.values()] + [1])
    body: list[str] = []
    for i, hour in enumerate(hours):
        finished, failed = counts.get(hour, (0, 0))
        x = i * (BAR_W + GAP)
        tall = round(PLOT_H * finished / peak, 1)
        low = round(PLOT_H * failed / peak, 1)
        tip = escape(f"{hour[:10]} {hour[11:]}:00 UTC: {finished} finished, {failed} failed")
        all_bar = _attrs(x=x, y=TOP + PLOT_H - tall, width=BAR_W, height=tall)
        bad_bar = _attrs(x=x, y=TOP + PLOT_H - low, width=BAR_W, height=low)
        body.append(
            f'<g><title>{tip}</title><rect class="bar-all" {all_bar}/>'
            f'<rect class="bar-bad" {bad_bar}/></g>'
        )
        if i % 6 == 0:
            at = _attrs(x=x, y=TOP + PLOT_H + 13)
            body.append(f'<text class="axis" {at}>{escape(hour[11:])}h</text>')
    width = len(hours) * (BAR_W + GAP)
    axis = _attrs(x1=0, y1=TOP + PLOT_H, x2=width, y2=TOP + PLOT_H)
    body.append(f'<line class="axis-line" {axis}/>')
    body.append(f'<text class="chart-label" x="0" y="11">{escape(label)}</text>')
    finished = sum(f for f, _ in counts.values())
    failed = sum(b for _, b in counts.values())
    title = f"{label}: finished and failed jobs per hour, last 24 hours (UTC)"
    desc = f"{finished} finished, {failed} of them failed; the busiest hour had {peak}."
    return _svg(width, TOP + PLOT_H + 18, title, desc, body, ident)


def _x(seconds: float, top: float, width: float) -> float:
    return round(width * math.log10(max(seconds, 1)) / math.log10(top), 1)


def percentiles(rows: Sequence[dict], ident: str):
    """Draw each kind's p50 to p99 on a log scale: a bar from p50 to p99, a mark at p95."""
    timed = [r for r in rows if r["p99"] is not None]
    if not timed:
        return Markup("")
    top = next((t for t, _ in TICKS if t >= max(r["p99"] for r in timed) * 1.2), 864000)
    width, row_h, head = 340, 30, 14
    body: list[str] = []
    for tick, name in TICKS:
        if tick > top:
            break
        x = _x(tick, top, width)
        line = _attrs(x1=x, y1=head, x2=x, y2=head + row_h * len(timed))
        at = _attrs(x=max(0, x - 10), y=10)
        body.append(f'<line class="grid-line" {line}/><text class="axis" {at}>{name}</text>')
    for i, row in enumerate(timed):
        y = head + i * row_h
        x50, x95, x99 = (_x(row[p], top, width) for p in ("p50", "p95", "p99"))
        tip = (
            f"{row['label']}: p50 {row['p50_text']}, p95 {row['p95_text']},"
            f" p99 {row['p99_text']} ({row['count']} jobs)"
        )
        body.append(
            f"<g><title>{escape(tip)}</title>"
            f'<text class="chart-label" {_attrs(x=0, y=y + 11)}>{escape(row["label"])}</text>'
            f'<rect class="p-range" {_attrs(x=x50, y=y + 16, width=max(x99 - x50, 2), height=8)}/>'
            f'<line class="p-mark" {_attrs(x1=x95, y1=y + 13, x2=x95, y2=y + 27)}/>'
            f'<circle class="p-median" {_attrs(cx=x50, cy=y + 20, r=4)}/></g>'
        )
    title = "Time to complete per kind: p50 (dot), p95 (line) and p99 (bar's end), log scale"
    desc = "; ".join(
        f"{r['label']} p50 {r['p50_text']}, p95 {r['p95_text']}, p99 {r['p99_text']}" for r in timed
    )
    return _svg(width + 10, head + row_h * len(timed) + 4, title, desc, body, ident)
