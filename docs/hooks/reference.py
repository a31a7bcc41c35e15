"""MkDocs hook: writes the CLI and configuration reference pages from the code's own tables at build time.

The pages are never committed, so they cannot drift from the code: the config reference walks the
schema (``pipeline.schema.describe`` over ``pipeline.config.Config``, every key with its type, default
and help) and the choice tables (sources, models, methods, formats, presets); the CLI reference walks
the argparse parser. mkdocs.yml names this file under ``hooks:`` and excludes it from the site.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]

CLI_PAGE = "reference/cli.md"
CONFIG_PAGE = "reference/config.md"
# Arguments the parser leaves without help text, by dest.
FALLBACK_HELP = {"overrides": "config overrides, each value read as YAML (distill.method=kd, export.formats=[onnx_fp32])",
                 "action": "check: read the dataset as a run would and report counts, skips and label statistics"}


def _cell(text: object) -> str:
    """One table cell: pipes and emphasis characters escaped, newlines folded."""
    s = str(text).replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*").replace("<", "&lt;")
    return " ".join(s.split())


def _code(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, str) else (value if value else '""')
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def _cli_parser() -> argparse.ArgumentParser:
    from pipeline.cli import build_parser  # parser entry point

    return build_parser()


def _subcommands(parser: argparse.ArgumentParser) -> tuple[dict[str, argparse.ArgumentParser], dict[str, str]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return dict(action.choices), helps
    return {}, {}


def _arguments(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| argument | default | what it does |", "|---|---|---|"]
    for a in parser._actions:
        if isinstance(a, argparse._HelpAction | argparse._SubParsersAction):
            continue
        name = ", ".join(a.option_strings) or (a.metavar if isinstance(a.metavar, str) else a.dest)
        if a.nargs in ("*", "+"):
            name += " ..."
        if a.choices and not a.option_strings:
            name += " (" + " \\| ".join(map(str, a.choices)) + ")"
        elif a.choices:
            name += " {" + ",".join(map(str, a.choices)) + "}"
        elif a.option_strings and a.nargs != 0:
            name += " " + (a.metavar or a.dest.upper())
        default = a.default
        shown = "" if default in (None, False, [], argparse.SUPPRESS) else _code(default)
        if a.required and a.option_strings:
            shown = "required"
        rows.append(f"| `{_cell(name)}` | {shown} | {_cell(a.help or FALLBACK_HELP.get(a.dest, ''))} |")
    return rows


def cli_markdown() -> str:
    parser = _cli_parser()
    commands, helps = _subcommands(parser)
    out = ["# CLI reference", "",
           "Generated at build time from the command line's argparse parser; every command also takes "
           "the options of `python -m pipeline` itself (below). Exit codes and examples: "
           "[Command line](../cli.md).", "",
           "```text", parser.format_usage().strip(), "```", "", *_arguments(parser), ""]
    for name, sub in commands.items():
        out += [f"## `{name}`", "", _cell(helps.get(name, "")), "",
                "```text", sub.format_usage().strip(), "```", "", *_arguments(sub), ""]
    return "\n".join(out)


def _section_rows(rows: list[tuple[str, str, object, str]]) -> dict[str, list[tuple[str, str, object, str]]]:
    """Rows grouped by section: ``data.csv.root`` goes under ``data.csv``, ``threads`` under the top level."""
    groups: dict[str, list] = {}
    for row in rows:
        section = row[0].rpartition(".")[0] or "(top level)"
        groups.setdefault(section, []).append(row)
    return groups


def config_markdown() -> str:
    from exporters.formats import FORMATS
    from pipeline.config import PRESETS_DIR, Config
    from pipeline.data.sources import SOURCES
    from pipeline.losses import METHODS
    from pipeline.models import MODELS
    from pipeline.runs import SCHEMA_VERSION
    from pipeline.schema import describe

    rows = describe(Config)
    out = ["# Configuration reference", "",
           f"Generated at build time from `pipeline/config.py` (schema version {SCHEMA_VERSION}): "
           f"{len(rows)} keys, each with its type, default and help, then the tables whose names the "
           "choice keys take. A preset sets only what differs from these defaults; "
           "`python -m pipeline show-config CONFIG` prints the resolved values. How options are checked: "
           "[Configuration](../configuration.md).", ""]
    for section, items in _section_rows(rows).items():
        out += [f"## `{section}`" if section != "(top level)" else "## Top level", "",
                "| key | type | default | description |", "|---|---|---|---|"]
        for key, type_name, default, help_text in items:
            out.append(f"| `{key}` | {_cell(type_name)} | {_code(default)} | {_cell(help_text)} |")
        out.append("")
    out += ["## Presets (`pipeline/presets/`)", "", "| preset | how to run it |", "|---|---|"]
    for path in sorted(PRESETS_DIR.glob("*.yaml")):
        first = next((ln.lstrip("# ").strip() for ln in path.read_text().splitlines() if ln.startswith("#")), "")
        out.append(f"| `{path.stem}` | {_cell(first)} |")
    out += ["", "## `data.source`: `pipeline.data.sources.SOURCES`", "",
            "| name | input | options section | splits by count |", "|---|---|---|---|"]
    for s in SOURCES.values():
        out.append(f"| `{s.name}` | {s.input_kind} | `data.{s.section}` | {'yes' if s.by_count else 'no'} |")
    out += ["", "## `teacher.arch`, `distill.arch`: `pipeline.models.MODELS`", "",
            "| name | role | input | network |", "|---|---|---|---|"]
    for m in MODELS.values():
        out.append(f"| `{m.name}` | {m.role} | {m.input_kind} | {_cell(m.summary)} |")
    out += ["", "## `distill.method`: `pipeline.losses.METHODS`", "",
            "| name | two heads | uses the teacher | rejects outliers | objective |", "|---|---|---|---|---|"]
    yes = {True: "yes", False: "no"}
    for m in METHODS.values():
        out.append(f"| `{m.name}` | {yes[m.two_heads]} | {yes[m.uses_teacher]} | {yes[m.rejects_outliers]} | "
                   f"{_cell(m.summary)} |")
    out += ["", "## `export.formats`: `exporters.formats.FORMATS`", "",
            "| name | precision | file | verified with | input layout | int8 I/O | parity tolerance (max) |",
            "|---|---|---|---|---|---|---|"]
    for f in FORMATS.values():
        out.append(f"| `{f.name}` | {f.precision} | `{f.suffix}` | {f.runtime} | {f.layout} | "
                   f"{yes[f.int8_io]} | {f.tolerance:g} |")
    return "\n".join(out) + "\n"


def on_files(files, config):
    """Add the generated pages to the site (mkdocs >= 1.6: ``File.generated``)."""
    # The pages describe this checkout's code, even where another checkout is installed. Done here, not
    # at import: mkdocs restores sys.path after loading a hook module.
    if sys.path[0] != str(ROOT):
        sys.path.insert(0, str(ROOT))
    for uri, make in ((CLI_PAGE, cli_markdown), (CONFIG_PAGE, config_markdown)):
        files.append(File.generated(config, uri, content=make()))
    return files
