"""The report pages: sections of tables (and a figure) rendered as Markdown and as one self-contained HTML page.

Shared by the pipeline's report (rarl_core/report.py) and the comparison's (rarl_core/compare_report.py): the
page's figures are embedded as base64 PNG, so it opens anywhere, offline, with no external asset.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Section:
    """One part of the report: `key` is its HTML anchor; text uses Markdown `code` only; figure is PNG bytes."""

    key: str
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figure: bytes | None = None
    caption: str = ""


def pct(x: float | None) -> str:
    """A share as a percentage with one decimal; '-' where there is no number (None or NaN)."""
    return "-" if x is None or x != x else f"{100 * x:.1f}"


def pts(x: float | None) -> str:
    """A difference of shares in signed percentage points; '-' where there is no number."""
    return "-" if x is None or x != x else f"{100 * x:+.1f}"


def sections_markdown(sections: list[Section]) -> str:
    """Sections as Markdown: heading, paragraphs, tables (figures live in the HTML page only)."""
    lines = []
    for section in sections:
        lines += [f"## {section.title}", ""]
        for paragraph in section.text:
            lines += [paragraph, ""]
        for table in section.tables:
            lines.append("| " + " | ".join(table.header) + " |")
            lines.append("|" + "---|" * len(table.header))
            lines += ["| " + " | ".join(row) + " |" for row in table.rows]
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def page_markdown(title: str, sections: list[Section]) -> str:
    return f"# {title}\n\n" + sections_markdown(sections)


_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3}code{background:#f3f3f3;padding:0 3px}img{max-width:100%}nav a{margin-right:1em}
figcaption{font-size:0.9em;color:#555}"""


def _inline(text: str) -> str:
    """Escape text for HTML, then turn Markdown `code`, **bold** and *italic* spans into HTML."""
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
    text = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)
    return re.sub(r"\*([^*]+)\*", r"<i>\1</i>", text)


def page_html(title: str, sections: list[Section]) -> str:
    """Sections as one self-contained HTML page: inline CSS, figures as base64 PNG data URIs, no external asset."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             "<nav>" + "".join(f'<a href="#{s.key}">{html.escape(s.title)}</a>' for s in sections) + "</nav>"]
    for section in sections:
        parts.append(f'<section id="{section.key}"><h2>{html.escape(section.title)}</h2>')
        parts += [f"<p>{_inline(p)}</p>" for p in section.text]
        if section.figure is not None:
            data = base64.b64encode(section.figure).decode("ascii")
            caption = f"<figcaption>{_inline(section.caption)}</figcaption>" if section.caption else ""
            parts.append(f'<figure><img alt="{html.escape(section.title)}" src="data:image/png;base64,{data}">'
                         f"{caption}</figure>")
        for table in section.tables:
            parts.append("<table><thead><tr>" + "".join(f"<th>{_inline(h)}</th>" for h in table.header)
                         + "</tr></thead><tbody>")
            parts += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in table.rows]
            parts.append("</tbody></table>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
