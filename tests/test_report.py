"""The run report on the shared smoke run: self-contained files, numbers equal to the run's JSON, and a
real headless Chromium opening it from disk with no console errors, no failed requests and every image
loaded."""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import shutil
from html.parser import HTMLParser

import pytest
from PIL import Image

from pipeline import contract
from pipeline.device import describe_host
from pipeline.report.sections import BENCH_COLS, headline_rows, legend_cell

pytestmark = pytest.mark.slow


class _Page(HTMLParser):
    """Every ``<img src>``, every table by id as rows of cell texts, and any external reference."""

    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.external: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src", ""))
        for key in ("src", "href"):
            if a.get(key) and not a[key].startswith(("data:", "#")):
                self.external.append(a[key])
        if tag == "table":
            self._table = a.get("id")
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _equal(cell: str, value) -> bool:
    """A table cell shows the JSON value (4 significant digits for floats; a dash for None)."""
    if value is None:
        return cell == "–"
    if isinstance(value, float):
        return math.isclose(float(cell), value, rel_tol=1e-3, abs_tol=1e-12)
    return cell == str(value)


@pytest.fixture(scope="module")
def report(smoke_run):
    out, _ = smoke_run
    run = contract.Run.open(out / "smoke")
    report_dir = run.stage("report")
    assert report_dir is not None, run.status("report")
    page = _Page()
    page.feed((report_dir / "report.html").read_text())
    return run, report_dir, page


def test_report_files_and_inlined_images(report):
    run, report_dir, page = report
    m = contract.read_metrics(report_dir)
    assert (report_dir / m.html).is_file() and (report_dir / m.markdown).is_file()
    assert m.sections == ["headline", "data", "training", "export", "benchmark", "real_photos"]
    assert page.external == [], "the report must not reference anything outside itself"
    assert len(page.images) == m.figures >= 4
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        img.verify()
        assert img.format == "PNG" and img.size[0] > 100
    md = (report_dir / m.markdown).read_text()
    assert "| artifact | backend |" in md and "## Benchmark" in md
    # the real-photo check: one row per model and photo, the same figures as real_photos.json
    checked, _ = contract.load_real_photos(run.stage("benchmark"))
    rows = page.tables["real_photos"][1:]
    assert len(rows) == sum(len(r["photos"]) for r in checked["models"].values()) > 0
    first = checked["models"]["student_float"]["photos"]["hopper"]
    assert ["student_float", "hopper"] == rows[0][:2] and _equal(rows[0][3], first["roll_slope"])
    # and its control on rendered faces: one row per model, the worst figures of real_photos.json's control
    control = page.tables["real_photos_control"]
    assert [r[0] for r in control[1:]] == list(checked["control"]["models"])
    worst = checked["control"]["models"]["tflite_int8"]["aggregate"]["yaw_drift"]["worst"]
    assert control[0][4] == "yaw drift" and _equal(control[2][4], worst)
    assert control[2][1].endswith("of 6")


def test_report_numbers_equal_the_json(report):
    run, _, page = report
    bench = contract.load_benchmark(run.stage("benchmark"))
    heads = headline_rows(bench)
    st, te = heads["student"], heads["teacher"]
    table = page.tables["headline"]
    assert table[1][:2] == ["student", "student/tflite_int8"]
    assert table[2][:2] == ["teacher", "teacher/tflite_fp32"]
    for row, src in ((table[1], st), (table[2], te)):
        for cell, key in zip(row[2:], ("test_mae", "p50_ms", "size_bytes"), strict=True):
            assert _equal(cell, src[key]), (key, cell, src[key])
    ratios = table[3][2:]
    assert _equal(ratios[0], st["test_mae"] / te["test_mae"])
    assert _equal(ratios[1], st["p50_ms"] / te["p50_ms"])
    # the benchmark's own headline ratio agrees with the report's
    assert math.isclose(float(ratios[1]), bench["headline"]["student_int8_tflite_vs_teacher_fp32_tflite_p50"],
                        rel_tol=0.02)
    rows = page.tables["bench_rows"]
    assert rows[0] == BENCH_COLS and len(rows) - 1 == len(bench["rows"])
    for cells, r in zip(rows[1:], bench["rows"], strict=True):
        for cell, key in zip(cells, BENCH_COLS, strict=True):
            want = legend_cell(r) if key == "legend" else r.get(key)  # the legend, with the reason when not timed
            assert _equal(cell, want), (r["artifact"], key, cell, want)
        if r["status"] == "ok":  # every timed artifact has its start-up, memory and throughput figures
            assert all(r.get(k) is not None for k in ("load_ms", "peak_rss_mb", "rss_increase_mb", "fps")), r
    parity = page.tables["parity"]
    exp = contract.read_metrics(run.stage("export"))
    assert [c[0] for c in parity[1:]] == list(exp.artifacts)


def test_report_names_the_host_and_explains_slow_int8(report):
    """Every figure names its host: the provenance line is the benchmark's host record (ISA features,
    cores/threads, runtime versions), the run summary holds the same host, and each int8-slower-than-fp32
    note of the benchmark is in the benchmark section. A clean run has no failure block."""
    run, report_dir, page = report
    bench = contract.load_benchmark(run.stage("benchmark"))
    host = bench["host"]
    assert host["runtimes"]["torch"] and host["torch_threads"] >= 1 and isinstance(host["features"], list)
    provenance = {row[0]: row[1] for row in page.tables["provenance"][1:]}
    assert provenance["machine"] == describe_host(host)
    assert f"torch {host['runtimes']['torch']}" in provenance["machine"] and "logical cores" in provenance["machine"]
    summary = json.loads((run.root / "summary.json").read_text())
    assert {k: summary["host"][k] for k in ("cpu", "features", "runtimes")} == \
        {k: host[k] for k in ("cpu", "features", "runtimes")}
    text = (report_dir / "report.html").read_text()
    md = (report_dir / contract.read_metrics(report_dir).markdown).read_text()
    bench_at = text.index('<section id="benchmark">')
    for note in bench["headline"]["int8_notes"]:
        assert note.count("\n") == 0 and " slower than " in note and "on this host: " in note
        assert text.find(html.escape(note), bench_at) > 0 and note in md.split("## Benchmark", 1)[1]
    assert 'class="alert"' not in text and bench["failures"] == []


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_in_headless_chromium(report, tmp_path):
    """Chromium (Debian's, never a downloaded build) opens the file from disk, as a reader would."""
    exe = _chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs the Debian package `chromium`")
        pytest.skip("chromium is not installed (apt-get install chromium); CI installs it")
    from playwright.sync_api import sync_playwright  # drives the system Chromium; never downloads a browser

    _, report_dir, page = report
    errors, failed = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1200, "height": 900})
        tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.on("requestfailed", lambda req: failed.append(req.url))
        tab.goto((report_dir / "report.html").resolve().as_uri(), wait_until="load")
        widths = tab.evaluate("Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
        titles = tab.evaluate("Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
        shot = tmp_path / "report.png"
        tab.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert errors == [] and failed == []
    assert len(widths) == len(page.images) and all(w > 0 for w in widths), widths
    assert titles == ["Headline", "Data", "Training", "Export", "Benchmark", "Real photos"]
    assert Image.open(shot).size[0] >= 1200
