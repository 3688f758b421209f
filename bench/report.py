"""Presenting the figures: the machine, the before/after table (stdout and BENCHMARKS.md) and
hand-written SVG line charts (no plotting dependency)."""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import sqlite3
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.phases import Sizes

LIBRARIES = (
    "slack-bolt",
    "slack-sdk",
    "langgraph",
    "langgraph-checkpoint",
    "langgraph-checkpoint-sqlite",
    "langchain-core",
    "aiohttp",
    "aiosqlite",
)
PLACEHOLDER = "not implemented yet"


@dataclass(frozen=True)
class Fig:
    key: str
    label: str
    unit: str
    better: str = "lower"  # "lower", "higher" or "" (neither)
    placeholder: bool = False  # may be None: "not implemented yet" in that checkout


def catalogue(s: Sizes) -> list[Fig]:
    """Every figure of a run with these sizes, in the order they are shown."""
    w, top = s.wave, s.pending_levels[-1]
    figs: list[Fig] = []
    for level in s.click_levels:
        for p in ("p50", "p99"):
            figs.append(Fig(f"ack_c{level}_{p}", f"click ack {p}, {level} concurrent", "ms"))
    for level in s.click_levels:
        for p in ("p50", "p99"):
            label = f"click → message updated {p}, {level} conc."
            figs.append(Fig(f"click_updated_c{level}_{p}", label, "ms"))
    for p in ("p50", "p99"):
        figs.append(Fig(f"slash_posted_c{w}_{p}", f"slash → approval posted {p}, {w} conc.", "ms"))
    for p in ("p50", "p99"):
        figs.append(Fig(f"slash_ack_c{w}_{p}", f"slash ack {p}, {w} concurrent", "ms"))
    figs += [
        Fig(
            "e2e_approvals_per_s",
            f"end to end, {s.e2e_flows} at once (median of {s.repeats})",
            "approvals/s",
            "higher",
        ),
        Fig(
            "floor_approvals_per_s",
            f"raw floor, graph only, {s.e2e_flows} at once (median of {s.repeats})",
            "approvals/s",
            "",
        ),
        Fig("bot_over_floor", "bot / raw floor", "ratio", "higher"),
        Fig("e2e_flow_p50", "one approval, slash → done, p50 (in the burst)", "ms"),
        Fig("e2e_flow_p99", "one approval, slash → done, p99 (in the burst)", "ms"),
        Fig("stmts_per_start", "SQL statements per start", "count"),
        Fig("hops_per_start", "DB thread round trips per start", "count"),
        Fig("db_ms_per_start", "DB thread busy per start", "ms"),
        Fig("db_cpu_ms_per_start", "DB thread CPU per start", "ms"),
        Fig("stmts_per_decision", "SQL statements per decision", "count"),
        Fig("hops_per_decision", "DB thread round trips per decision", "count"),
        Fig("db_ms_per_decision", "DB thread busy per decision", "ms"),
        Fig("db_cpu_ms_per_decision", "DB thread CPU per decision", "ms"),
        Fig("floor_stmts_per_start", "raw floor: statements per start", "count", ""),
        Fig("floor_hops_per_start", "raw floor: round trips per start", "count", ""),
        Fig("floor_stmts_per_decision", "raw floor: statements per decision", "count", ""),
        Fig("floor_hops_per_decision", "raw floor: round trips per decision", "count", ""),
        Fig("cpu_ms_per_start", f"bot CPU per start (slash waves of {w})", "ms"),
        Fig("cpu_ms_per_decision", "bot CPU per decision (click waves)", "ms"),
        Fig("cpu_ms_per_approval", f"bot CPU per approval (burst of {s.e2e_flows})", "ms"),
        Fig("floor_cpu_ms_per_approval", "raw floor: CPU per approval", "ms", ""),
        Fig("gc_per_decision", "gc collections per decision", "count"),
        Fig("gc_ms_per_decision", "gc time per decision", "ms"),
        Fig("rss_mb_0", "bot RSS, 0 pending approvals", "MB"),
    ]
    for level in s.pending_levels:
        figs.append(Fig(f"rss_mb_{level}", f"bot RSS, {level:,} pending approvals", "MB"))
    figs += [
        Fig("pending_starts_per_s", f"starts/s building {top:,} pending", "starts/s", "higher"),
        Fig("home_0_p50", "App Home open → published p50, 0 pending", "ms"),
        Fig("home_0_p99", "App Home open → published p99, 0 pending", "ms"),
        Fig(f"home_{top}_p50", f"App Home open → published p50, {top:,} pending", "ms"),
        Fig(f"home_{top}_p99", f"App Home open → published p99, {top:,} pending", "ms"),
        Fig("approvals_list_0_p50", "/approvals list ack p50, 0 pending", "ms", "lower", True),
        Fig("approvals_list_0_p99", "/approvals list ack p99, 0 pending", "ms", "lower", True),
        Fig(
            f"approvals_list_{top}_p50",
            f"/approvals list ack p50, {top:,} pending",
            "ms",
            "lower",
            True,
        ),
        Fig(
            f"approvals_list_{top}_p99",
            f"/approvals list ack p99, {top:,} pending",
            "ms",
            "lower",
            True,
        ),
        Fig("cold_start_ms", "cold start → first slash 200 (median)", "ms"),
    ]
    return figs


def fmt(value: Any) -> str:
    if value is None:
        return PLACEHOLDER
    if not isinstance(value, int | float) or not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) >= 1:
        return f"{value:,.0f}"
    a = abs(value)
    return f"{value:,.0f}" if a >= 100 else f"{value:.1f}" if a >= 10 else f"{value:.2f}"


def ratio(cur: Any, base: Any) -> str:
    ok = isinstance(cur, int | float) and isinstance(base, int | float)
    if not ok or not base or not math.isfinite(cur) or not math.isfinite(base):
        return ""
    return f"{cur / base:.2f}×"


def rows(figs: list[Fig], results: dict[str, dict[str, Any]], names: list[str]) -> list[list[str]]:
    out = []
    for f in figs:
        values = [results[n]["figures"].get(f.key) for n in names]
        row = [f.label, f.unit, *(fmt(v) for v in values)]
        if len(names) == 2:
            row += [ratio(values[0], values[1]), f.better]
        out.append(row)
    return out


def header(names: list[str]) -> list[str]:
    cols = ["figure", "unit", *names]
    return [*cols, f"{names[0]}/{names[1]}", "better"] if len(names) == 2 else cols


def text_table(figs: list[Fig], results: dict[str, dict[str, Any]], names: list[str]) -> str:
    table = [header(names), *rows(figs, results, names)]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = []
    for i, r in enumerate(table):
        cells = [
            c.ljust(w) if j < 2 else c.rjust(w)
            for j, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def md_table(head: list[str], body: list[list[str]], right_from: int = 2) -> str:
    align = ["---" if i < right_from else "---:" for i in range(len(head))]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in body]
    return "\n".join(lines)


# -- the machine -----------------------------------------------------------------------------
def machine() -> dict[str, str]:
    def first(path: str, prefix: str) -> str:
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return "unknown"

    mem = first("/proc/meminfo", "MemTotal")
    ram = f"{int(mem.split()[0]) / 1024 / 1024:.1f} GiB" if mem != "unknown" else mem
    info = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "CPU": first("/proc/cpuinfo", "model name"),
        "cores": f"{os.cpu_count()} logical, {len(os.sched_getaffinity(0))} usable",
        "RAM": ram,
        "OS": platform.platform(),
        "Python": sys.version.split()[0],
        "SQLite": sqlite3.sqlite_version,
    }
    for lib in LIBRARIES:
        try:
            info[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            info[lib] = "not installed"
    return info


# -- SVG -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Series:
    name: str
    color: str
    dashed: bool
    points: list[tuple[float, float]]


def svg_chart(
    title: str, x_label: str, y_label: str, series: list[Series], *, log_x: bool, log_y: bool
) -> str:
    """A small line chart as SVG text."""
    width, height, left, right, top, bottom = 640, 380, 70, 170, 40, 50
    pts = [p for s in series for p in s.points if p[1] is not None and math.isfinite(p[1])]
    xs = sorted({p[0] for p in pts})
    ys = [p[1] for p in pts]

    def scale(v: float, lo: float, hi: float, log: bool) -> float:
        if log:
            v, lo, hi = math.log10(max(v, 1e-9)), math.log10(lo), math.log10(hi)
        return 0.5 if hi == lo else (v - lo) / (hi - lo)

    if log_y:
        y_lo = 10 ** math.floor(math.log10(max(min(ys), 1e-3)))
        y_hi = 10 ** math.ceil(math.log10(max(ys)))
        y_ticks = [10**e for e in range(round(math.log10(y_lo)), round(math.log10(y_hi)) + 1)]
    else:
        y_lo, y_hi = 0.0, nice_ceiling(max(ys))
        y_ticks = [y_hi * i / 4 for i in range(5)]
    x_lo, x_hi = xs[0], xs[-1]
    if x_lo == x_hi:
        x_hi = x_lo + 1

    def px(x: float) -> float:
        return left + scale(x, x_lo, x_hi, log_x) * (width - left - right)

    def py(y: float) -> float:
        return height - bottom - scale(y, y_lo, y_hi, log_y) * (height - top - bottom)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">{esc(title)}</text>',
    ]
    for y in y_ticks:
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{py(y):.1f}" y2="{py(y):.1f}" '
            'stroke="#ddd"/>'
        )
        out.append(
            f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{fmt_tick(y)}</text>'
        )
    for x in xs:
        out.append(
            f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{top}" y2="{height - bottom}" '
            'stroke="#eee"/>'
        )
        out.append(
            f'<text x="{px(x):.1f}" y="{height - bottom + 16}" text-anchor="middle">'
            f"{fmt_tick(x)}</text>"
        )
    out += [
        f'<line x1="{left}" x2="{width - right}" y1="{height - bottom}" y2="{height - bottom}" '
        'stroke="black"/>',
        f'<line x1="{left}" x2="{left}" y1="{top}" y2="{height - bottom}" stroke="black"/>',
        f'<text x="{(left + width - right) / 2}" y="{height - 12}" text-anchor="middle">'
        f"{esc(x_label)}</text>",
        f'<text transform="translate(16 {(top + height - bottom) / 2}) rotate(-90)" '
        f'text-anchor="middle">{esc(y_label)}</text>',
    ]
    for i, s in enumerate(series):
        good = [(x, y) for x, y in s.points if y is not None and math.isfinite(y)]
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in good)
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{s.color}" stroke-width="2"{dash}/>'
        )
        for x, y in good:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{s.color}"/>')
        ly = top + 10 + i * 20
        lx = width - right + 12
        out.append(
            f'<line x1="{lx}" x2="{lx + 24}" y1="{ly}" y2="{ly}" stroke="{s.color}" '
            f'stroke-width="2"{dash}/>'
        )
        out.append(f'<text x="{lx + 30}" y="{ly + 4}">{esc(s.name)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def nice_ceiling(v: float) -> float:
    if v <= 0:
        return 1.0
    e = 10 ** math.floor(math.log10(v))
    return next(m * e for m in (1, 2, 2.5, 5, 10) if m * e >= v)


def fmt_tick(v: float) -> str:
    if v >= 1000 and v == int(v):
        return f"{v:,.0f}"
    return f"{v:g}"


def esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


COLORS = {"current": "#1f77b4", "baseline": "#d62728"}


def level_chart(results: dict[str, dict[str, Any]], s: Sizes, prefix: str, title: str) -> str:
    """p50 and p99 of ``<prefix>_c<level>`` against the concurrency level."""
    series = []
    for name, r in results.items():
        for p, dashed in (("p50", False), ("p99", True)):
            pts = [(lv, r["figures"].get(f"{prefix}_c{lv}_{p}")) for lv in s.click_levels]
            series.append(Series(f"{name} {p}", COLORS.get(name, "#555"), dashed, pts))
    return svg_chart(
        title, "concurrent clicks (one wave)", "ms (log scale)", series, log_x=True, log_y=True
    )


def rss_chart(results: dict[str, dict[str, Any]], s: Sizes) -> str:
    levels = [0, *s.pending_levels]
    series = [
        Series(
            name,
            COLORS.get(name, "#555"),
            False,
            [(lv, r["figures"][f"rss_mb_{lv}"]) for lv in levels],
        )
        for name, r in results.items()
    ]
    return svg_chart(
        "Bot RSS vs pending approvals",
        "pending approvals",
        "RSS, MB",
        series,
        log_x=False,
        log_y=False,
    )
