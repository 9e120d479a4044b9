"""Markup for a self-contained page: inline CSS, images as data URIs, no external address.

Every helper escapes the text it is given; callers pass raw values (from the run's files) and
only ever join the helpers' output. ``raw`` marks markup that is already safe.
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

CSS = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #d9dee7; --panel: #f6f8fb; --accent: #b4441c;
        --good: #e3f4e6; --bad: #fbe4e1; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff; line-height: 1.5;
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", "PingFang SC", "Noto Sans CJK SC",
             "Microsoft YaHei", sans-serif; }
header { padding: 28px 40px 18px; border-bottom: 3px solid var(--accent); background: var(--panel); }
header h1 { margin: 0 0 4px; font-size: 26px; }
header p { margin: 0; color: var(--muted); font-size: 13px; word-break: break-all; }
nav { padding: 10px 40px; border-bottom: 1px solid var(--line); font-size: 14px;
      display: flex; flex-wrap: wrap; gap: 4px 18px; }
nav a { color: var(--accent); text-decoration: none; white-space: nowrap; }
main { max-width: 1180px; padding: 8px 40px 48px; }
section { margin-top: 30px; }
h2 { font-size: 20px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
p.note { color: var(--muted); font-size: 13px; }
table { border-collapse: collapse; font-size: 14px; margin: 8px 0; }
th, td { border: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: var(--panel); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.good { background: var(--good); }
td.bad { background: var(--bad); }
.figures { display: flex; flex-wrap: wrap; gap: 22px; align-items: flex-start; }
figure { margin: 0; max-width: 100%; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 13px; margin-top: 6px; }
pre { background: var(--panel); border: 1px solid var(--line); padding: 12px 14px; font-size: 13px;
      white-space: pre-wrap; word-break: break-word; }
"""


@dataclass(frozen=True)
class Markup:
    """A piece of markup that is already escaped."""

    text: str

    def __str__(self) -> str:
        return self.text


def raw(text: str) -> Markup:
    return Markup(text)


def esc(value) -> str:
    return value.text if isinstance(value, Markup) else html.escape(str(value), quote=True)


def join(*parts) -> Markup:
    return Markup("".join(esc(p) for p in parts))


def para(text, cls: str | None = None) -> Markup:
    attr = f' class="{esc(cls)}"' if cls else ""
    return Markup(f"<p{attr}>{esc(text)}</p>")


def pre(text) -> Markup:
    return Markup(f"<pre>{esc(text)}</pre>")


def table(header: list | None, rows: list[list], cell_classes: list[list] | None = None) -> Markup:
    """A table; ``cell_classes[i][j]`` (optional) is the CSS class of body cell (i, j). Without a
    header, the first column is set as row headings."""
    if header is None:
        body = "".join(f"<tr><th>{esc(row[0])}</th>{''.join(f'<td>{esc(v)}</td>' for v in row[1:])}</tr>"
                       for row in rows)
        return Markup(f"<table><tbody>{body}</tbody></table>")
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cells = []
        for j, value in enumerate(row):
            cls = cell_classes[i][j] if cell_classes else ""
            attr = f' class="{esc(cls)}"' if cls else ""
            cells.append(f"<td{attr}>{esc(value)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return Markup(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def figure(png: Path, caption, alt: str) -> Markup:
    """The PNG file embedded as a data URI, so the page needs nothing beside it. The figure is
    as wide as the picture, so that its caption wraps under it and figures can share a row."""
    raw_png = Path(png).read_bytes()
    data = base64.b64encode(raw_png).decode("ascii")
    width = int.from_bytes(raw_png[16:20], "big")  # the IHDR chunk's width field
    return Markup(f'<figure style="width: {width}px"><img src="data:image/png;base64,{data}" alt="{esc(alt)}" '
                  f'width="{width}"><figcaption>{esc(caption)}</figcaption></figure>')


def figures(*items: Markup) -> Markup:
    return Markup(f'<div class="figures">{"".join(esc(i) for i in items)}</div>')


@dataclass
class Section:
    id: str
    heading: str
    body: Markup


def page(title: str, subtitle: str, sections: list[Section], lang: str, contents: str) -> str:
    nav = "\n".join(f'<a href="#{esc(s.id)}">{esc(s.heading)}</a>' for s in sections)
    body = "".join(f'<section id="{esc(s.id)}"><h2>{esc(s.heading)}</h2>{esc(s.body)}</section>' for s in sections)
    return ("<!DOCTYPE html>\n"
            f'<html lang="{"zh-CN" if lang == "zh" else "en"}">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>\n"
            f'<nav aria-label="{esc(contents)}">{nav}</nav>\n<main>\n{body}\n</main>\n</body>\n</html>\n')
