"""Inline SVG bar charts rendered on the server (no JavaScript, no CDN)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 720, 200, 56, 22, 10


@dataclass(frozen=True)
class Series:
    name: str
    css: str  # a class of app.css that colours the bars
    values: Sequence[float]


def stacked_bars(
    *, labels: Sequence[str], series: Sequence[Series], fmt: Callable[[float], str], title: str
) -> SafeString:
    """A stacked bar chart, one bar per label, with a max gridline and a <title> per bar."""
    count = len(labels)
    totals = [sum(s.values[i] for s in series) for i in range(count)]
    top = max(totals, default=0) or 1
    plot_w, plot_h = WIDTH - PAD_LEFT, HEIGHT - PAD_BOTTOM - PAD_TOP
    slot = plot_w / max(count, 1)
    bar_w = max(slot * 0.7, 1)
    parts: list[str] = []
    for y, value in ((PAD_TOP, top), (PAD_TOP + plot_h / 2, top / 2)):
        parts.append(
            format_html(
                '<line class="grid" x1="{}" x2="{}" y1="{}" y2="{}"/>'
                '<text class="axis" x="{}" y="{}" text-anchor="end">{}</text>',
                PAD_LEFT,
                WIDTH,
                round(y, 1),
                round(y, 1),
                PAD_LEFT - 6,
                round(y + 4, 1),
                fmt(value),
            )
        )
    parts.append(
        format_html(
            '<line class="base" x1="{}" x2="{}" y1="{}" y2="{}"/>', PAD_LEFT, WIDTH, PAD_TOP + plot_h, PAD_TOP + plot_h
        )
    )
    for i, label in enumerate(labels):
        x = PAD_LEFT + i * slot + (slot - bar_w) / 2
        y = PAD_TOP + plot_h
        tip = f"{label}: " + ", ".join(f"{s.name} {fmt(s.values[i])}" for s in series)
        rects = []
        for s in series:
            h = plot_h * s.values[i] / top
            if h <= 0:
                continue
            y -= h
            rects.append(
                format_html(
                    '<rect class="{}" x="{}" y="{}" width="{}" height="{}"/>',
                    s.css,
                    round(x, 1),
                    round(y, 1),
                    round(bar_w, 1),
                    round(h, 1),
                )
            )
        parts.append(
            format_html(
                '<g><title>{}</title><rect class="hit" x="{}" y="{}" width="{}" height="{}"/>{}</g>',
                tip,
                round(x, 1),
                PAD_TOP,
                round(bar_w, 1),
                plot_h,
                mark_safe("".join(rects)),
            )
        )
        step = max(count // 6, 1)
        if (i % step == 0 and count - 1 - i >= step // 2) or i == count - 1:
            anchor = "end" if i == count - 1 else "middle"
            parts.append(
                format_html(
                    '<text class="axis" x="{}" y="{}" text-anchor="{}">{}</text>',
                    round(x + bar_w / 2 if anchor == "middle" else x + bar_w, 1),
                    HEIGHT - 6,
                    anchor,
                    label,
                )
            )
    legend = format_html_join(
        "", '<span class="legend-item"><i class="swatch {}"></i>{}</span>', ((s.css, s.name) for s in series)
    )
    return format_html(
        '<figure class="chart"><svg viewBox="0 0 {} {}" role="img" aria-label="{}">{}</svg><figcaption class="legend">{}</figcaption></figure>',
        WIDTH,
        HEIGHT,
        title,
        mark_safe("".join(parts)),
        legend,
    )
