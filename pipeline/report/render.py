"""Write the report's sections as one self-contained HTML page and as Markdown (figures beside it)."""

from __future__ import annotations

import base64
import html
import time
from pathlib import Path
from typing import Any

import yaml

from pipeline import contract
from pipeline.contract import ReportMetrics, Run
from pipeline.report import sections as sec
from pipeline.report.sections import Alert, Figure, Section, Table, num
from pipeline.runs import atomic_write_bytes, atomic_write_text

HTML_FILE = "report.html"
MD_FILE = "report.md"
FIG_DIR = "figures"

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.85em}td,th{border:1px solid #ccc;padding:.25em .5em}
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}caption{caption-side:bottom;
font-size:.8em;color:#666;text-align:left}img{max-width:100%;border:1px solid #eee}pre{background:#f7f7f7;
padding:.6em;overflow-x:auto;font-size:.8em}.alert{border:3px solid #c00;background:#fff0f0;padding:.4em 1em;
margin:1em 0}.alert strong{color:#c00}"""


def find_ablation(run_root: Path) -> Path | None:
    """The ablation of this run's preset, where ``python -m pipeline ablate`` writes it with the same --out."""
    cand = Path(run_root).parent / f"{Path(run_root).name}_ablation"
    return cand if (cand / "ablation.json").is_file() else None


def _cell_html(v: Any) -> str:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return f'<td class="n">{html.escape(num(v))}</td>'
    return f"<td>{html.escape(num(v))}</td>"


def _table_html(t: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in t.header)
    body = "".join("<tr>" + "".join(_cell_html(v) for v in row) + "</tr>" for row in t.rows)
    cap = f"<caption>{html.escape(t.caption)}</caption>" if t.caption else ""
    return f'<table id="{t.id}">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _table_md(t: Table) -> str:
    def cell(v: Any) -> str:
        return num(v).replace("|", "\\|")
    lines = ["| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in t.rows]
    return "\n".join(lines) + (f"\n\n*{t.caption}*" if t.caption else "")


def _alert(a: Alert, as_html: bool) -> str:
    if as_html:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in a.lines)
        foot = f"<p>{html.escape(a.footer)}</p>" if a.footer else ""
        return f'<div class="alert" role="alert"><p><strong>{html.escape(a.title)}</strong></p><ul>{items}</ul>{foot}</div>'
    lines = [f"> **{a.title}**", ">"] + [f"> - {line}" for line in a.lines]
    return "\n".join(lines + ([">", f"> {a.footer}"] if a.footer else []))


def _block(b: Any, as_html: bool) -> str:
    if isinstance(b, Alert):
        return _alert(b, as_html)
    if isinstance(b, Table):
        return _table_html(b) if as_html else _table_md(b)
    if isinstance(b, Figure):
        if as_html:
            data = base64.b64encode(b.png).decode()
            return f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(b.alt)}"></figure>'
        return f"![{b.alt}]({FIG_DIR}/{b.name}.png)"
    if isinstance(b, tuple) and b[0] == "markdown":  # pre-rendered Markdown (the ablation's own tables)
        return f"<pre>{html.escape(b[1])}</pre>" if as_html else b[1]
    return f"<p>{html.escape(str(b))}</p>" if as_html else str(b)


def build_sections(run: Run, ablation: Path | None) -> tuple[list[Section], list[Figure]]:
    """Every section in the report's order, and the figures they hold."""
    cfg = yaml.safe_load((run.root / "config.yaml").read_text()) if (run.root / "config.yaml").is_file() else {}
    bench_dir = run.stage("benchmark")
    bench = contract.load_benchmark(bench_dir) if bench_dir else None
    units = "units"
    if run.stage("data"):
        from pipeline.runs import read_json

        units = read_json(contract.artifact_path(run.stage("data"), "stats")).get("units") or units
    figs: list[Figure] = []
    failed = sec.failures_section(run, bench)  # first: every figure below was measured without them
    head = sec.headline(run, bench, units)
    head.blocks.append(sec.provenance(run, bench))
    out = ([failed] if failed else []) + [head, sec.data_section(run, cfg, figs), sec.training_section(run, units, figs)]
    abl = sec.ablation_section(ablation, figs)
    if abl is not None:
        out.append(abl)
    out += [sec.export_section(run), sec.benchmark_section(run, bench, units, figs)]
    photos = sec.real_photos_section(run, figs)
    if photos is not None:
        out.append(photos)
    return out, figs


def render_report(run: Run, out_dir: Path, ablation: Path | None = None) -> ReportMetrics:
    """Write ``report.html``, ``report.md`` and ``figures/*.png`` into ``out_dir``."""
    out_dir = Path(out_dir)
    sections, figs = build_sections(run, ablation)
    title = f"Run report: {run.root.name}"
    stamp = f"generated {time.strftime('%Y-%m-%d %H:%M:%S')} from {run.root}"
    body = "".join(f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>'
                   + "".join(_block(b, True) for b in s.blocks) + "</section>" for s in sections)
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<link rel="icon" href="data:,"><style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>'
            f"<p>{html.escape(stamp)}</p>{body}</body></html>\n")
    atomic_write_text(out_dir / HTML_FILE, page)
    md = [f"# {title}", "", stamp, ""]
    for s in sections:
        md += [f"## {s.title}", ""] + [_block(b, False) + "\n" for b in s.blocks]
    atomic_write_text(out_dir / MD_FILE, "\n".join(md))
    for f in figs:
        atomic_write_bytes(out_dir / FIG_DIR / f"{f.name}.png", f.png)
    return ReportMetrics(HTML_FILE, MD_FILE, len(figs), str(ablation) if ablation else None,
                         [s.id for s in sections])
