"""The documentation: the site builds with ``mkdocs build --strict`` (any warning, dead link or missing
anchor fails), the README stays short with working links, the generated references cover every key
and command, and the worked example in docs/own-data.md is what the shipped dataset really prints."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

from pipeline.api import check_dataset
from pipeline.cli.dataset import format_report
from pipeline.config import Config
from pipeline.schema import describe

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
EXAMPLE = "examples/tiny_csv"


def _hook():
    spec = importlib.util.spec_from_file_location("docs_reference_hook", ROOT / "docs" / "hooks" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_site_builds_strict(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    site = tmp_path / "site"
    for page in ("index.html", "own-data.html", "method.html", "api.html", "reference/cli.html",
                 "reference/config.html"):
        assert (site / page).is_file(), page
    # Offline: no page loads a script, stylesheet or font from the network.
    remote = [p.name for p in site.rglob("*.html")
              if re.search(r"<(script|link)[^>]+(src|href)=\"https?://", p.read_text(encoding="utf-8"))]
    assert remote == []


def test_readme_is_short_and_its_links_resolve():
    text = README.read_text(encoding="utf-8")
    assert len(text.encode()) < 15_000
    # The two quick-start commands, exactly.
    assert "pip install -e . && python -m pipeline run face_pose.yaml" in text
    assert 'pip install -e ".[test]" && python -m pytest -q' in text
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    assert targets, "the README links into docs/"
    dead = [t for t in targets if not re.match(r"[a-z]+://", t) and not (ROOT / t.split("#")[0]).exists()]
    assert dead == []


def test_config_reference_lists_every_key_with_its_section_default():
    page = _hook().config_markdown()
    rows = describe(Config)
    missing = [key for key, *_ in rows if f"| `{key}` |" not in page]
    assert missing == []
    defaults = {key: default for key, _type, default, _help in rows}
    # Nested sections take their parent's defaults, not their class's (TrainConfig alone says 12).
    assert defaults["distill.train.epochs"] == Config().distill.train.epochs == 40
    assert "| `distill.train.epochs` | an integer | `40` |" in page


def test_cli_reference_lists_every_command_and_option():
    hook = _hook()
    page = hook.cli_markdown()
    commands, _ = hook._subcommands(hook._cli_parser())
    assert len(commands) >= 10
    for name, sub in commands.items():
        assert f"## `{name}`" in page
        for action in sub._actions:
            for flag in [] if action.dest == "help" else action.option_strings:
                assert flag in page, (name, flag)


def test_worked_example_dataset_check_matches_the_docs(monkeypatch):
    """The shipped CSV example reads as docs/own-data.md shows, to the digit."""
    monkeypatch.chdir(ROOT)
    report = check_dataset("csv", EXAMPLE, ["data.csv.units=degrees"])
    assert report["count"] == 48
    assert report["skipped"] == {"image missing": 1, "label not a finite number": 1}
    assert report["label_names"] == ["yaw", "pitch", "roll"]
    printed = format_report("csv", EXAMPLE, report)
    assert printed in (ROOT / "docs" / "own-data.md").read_text(encoding="utf-8")
    size = sum(p.stat().st_size for p in (ROOT / EXAMPLE).rglob("*") if p.is_file())
    assert size < 1_000_000


def test_no_reference_to_files_outside_the_repository():
    """METHOD.md was never in the repository; the method is docs/method.md."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    hits = [f for f in files if f != "tests/test_docs.py" and (ROOT / f).is_file()
            and (ROOT / f).suffix in {".py", ".md", ".yaml", ".toml", ".kt", ".kts", ".sh"}
            and "METHOD.md" in (ROOT / f).read_text(encoding="utf-8", errors="replace")]
    assert hits == []
