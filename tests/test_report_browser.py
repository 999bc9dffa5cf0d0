"""The report of a real pipeline run renders in headless Chromium, offline: every chart
drew (the report's own load check, read back from the DOM), no console message, and a
screenshot that is not blank.

Needs the ``chromium`` executable (Debian: ``apt-get install chromium``). Skipped without
it, unless ``BIGSEG_REQUIRE_BROWSER=1`` (CI), where a missing browser fails the test."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_report import CHARTS, full_metrics

from bigseg.backend import resolve
from bigseg.config import load_run_config
from bigseg.pipeline import run_stages
from bigseg.report import render
from bigseg.testing.outputs import report_path

TABLES = ("transactions", "customers", "events", "campaigns", "reviews")
#: charts a hierarchical run with a fairness audit and a second segmentation must have
RUN_CHARTS = {"chart-sizes", "chart-profile", "chart-projection", "chart-dendrogram",
              "chart-churn", "chart-value", "chart-lift-churn", "chart-gains-churn",
              "chart-calibration-churn", "chart-importance-churn", "chart-importance-value",
              "chart-drift-features", "chart-drift-segments", "chart-fairness-gender",
              "chart-migration"}  # fmt: skip
PALETTE_BLUE = (0x4E, 0x79, 0xA7)


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


MISSING = "headless Chromium not found (Debian: apt-get install chromium)"


@pytest.fixture(scope="module")
def browser():
    """The Chromium executable; skips without one, or gives None where
    ``BIGSEG_REQUIRE_BROWSER=1`` so that :func:`require` fails the test."""
    exe = find_chromium()
    if exe is None and os.environ.get("BIGSEG_REQUIRE_BROWSER") != "1":
        pytest.skip(MISSING)
    return exe


def require(exe: str | None) -> str:
    if exe is None:
        pytest.fail(MISSING + "; BIGSEG_REQUIRE_BROWSER=1 requires it")
    return exe


def chromium(exe: str, tmp: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium with its own profile, every host name unresolvable (offline),
    console messages logged to stderr."""
    cmd = [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--no-first-run", "--disable-extensions", "--mute-audio",
           f"--user-data-dir={tmp / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND",
           "--enable-logging=stderr", "--v=0", *args, url]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90,
                          env={**os.environ, "HOME": str(tmp)})  # fmt: skip


def console_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]


def png_pixels(path: Path) -> np.ndarray:
    """Decode an 8-bit RGB/RGBA, non-interlaced PNG (what Chromium writes) to H x W x C."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, hdr = 8, b"", None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
    w, h, depth, ctype, _, _, interlace = hdr
    assert depth == 8 and ctype in (2, 6) and interlace == 0, hdr
    bpp = 3 if ctype == 2 else 4
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, w * bpp + 1)
    out = np.zeros((h, w * bpp), np.int32)
    prev = np.zeros(w * bpp, np.int32)
    for r in range(h):
        f, line = raw[r, 0], raw[r, 1:].astype(np.int32)
        if f == 0:
            cur = line
        elif f == 1:  # Sub: a running sum per channel
            cur = np.cumsum(line.reshape(w, bpp), axis=0).reshape(-1) % 256
        elif f == 2:
            cur = (line + prev) % 256
        else:  # Average, Paeth: sequential along the row
            cur, pl, ll = [0] * (w * bpp), prev.tolist(), line.tolist()
            for i in range(w * bpp):
                a = cur[i - bpp] if i >= bpp else 0
                b = pl[i]
                if f == 3:
                    cur[i] = (ll[i] + (a + b) // 2) % 256
                else:
                    c = pl[i - bpp] if i >= bpp else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                    cur[i] = (ll[i] + pred) % 256
            cur = np.asarray(cur, np.int32)
        out[r] = prev = cur
    return out.reshape(h, w, bpp)[:, :, :3].astype(np.uint8)


def check_in_browser(exe: str, page: Path, tmp: Path, expected: set[str]) -> dict:
    """Load ``page``; assert every chart drew, the expected ones are there and nothing
    was logged to the console; return the chart verdicts."""
    url = page.resolve().as_uri()
    got = chromium(exe, tmp, url, "--dump-dom", "--virtual-time-budget=5000")
    assert got.returncode == 0, got.stderr[-3000:]
    body = re.search(r"<body([^>]*)>", got.stdout)
    assert body, f"no <body> in the dumped DOM: {got.stdout[:500]}"
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))
    assert "data-charts" in attrs, "the report's chart check did not run"
    charts = json.loads(html.unescape(attrs["data-charts"]))
    bad = {k: v for k, v in charts.items() if v != "ok"}
    assert not bad, f"charts that did not draw: {bad}"
    assert expected <= set(charts), f"missing charts: {expected - set(charts)}"
    assert attrs["data-charts-bad"] == "0" and int(attrs["data-charts-ok"]) == len(charts)
    # every chart figure of the file was checked (none lost by a script error)
    assert len(charts) == page.read_text().count('<figure class="chart"')
    assert not console_lines(got.stderr), console_lines(got.stderr)
    return charts


def check_screenshot(exe: str, page: Path, tmp: Path) -> None:
    shot = tmp / "report.png"
    got = chromium(exe, tmp, page.resolve().as_uri(), f"--screenshot={shot}",
                   "--window-size=1200,4000", "--force-device-scale-factor=0.5")  # fmt: skip
    assert got.returncode == 0 and shot.is_file(), got.stderr[-3000:]
    px = png_pixels(shot).astype(np.int32)
    assert px.shape[0] >= 1500 and px.shape[1] >= 500, px.shape
    chroma = px.max(axis=2) - px.min(axis=2)
    coloured = (chroma > 60).mean()
    dark = (px.max(axis=2) < 100).mean()  # text
    blue = (np.abs(px - PALETTE_BLUE).max(axis=2) <= 8).sum()
    assert coloured > 0.005, f"screenshot nearly colourless ({coloured:.4f}): charts missing"
    assert dark > 0.001, f"no text in the screenshot ({dark:.4f})"
    assert blue > 200, f"too few pixels of the first segment's colour: {blue}"


@pytest.fixture(scope="module")
def real_report(browser, tmp_path_factory, local_client):
    """A hierarchical run of 2,000 synthetic customers with a fairness audit, then a
    second segmentation (for the migration), then the report."""
    from bigseg.synth import generate

    if browser is None:
        return None
    root = tmp_path_factory.mktemp("report-run")
    generate(2000, root / "data", seed=11, chunk_size=1000)
    doc = {
        "data": {t: {"path": str(root / "data" / "raw" / t)} for t in TABLES},
        "horizon_days": 90,
        "seed": 5,
        "segmentation": {"method": "hierarchical", "k": 4},
        "prediction": {"n_estimators": 40, "targets": ["churn", "value"]},
        "fairness": {"protected": ["gender"]},
        "privacy": {"min_segment_size": 20},
        "output": str(root / "out"),
    }
    (root / "job.yaml").write_text(yaml.safe_dump(doc))
    cfg = load_run_config(root / "job.yaml")
    run_stages(cfg, local_client, resolve("cpu"))
    metrics = run_stages(cfg, local_client, resolve("cpu"), stages=("segment", "report"))
    page = report_path(cfg.output_dir)  # the report the latest commit lists
    assert str(page) == metrics["report"]  # the second run's own report
    return page, metrics


@pytest.mark.slow  # a whole pipeline run of its own: `make test-slow` (CI runs both)
def test_real_report_renders_with_every_chart(browser, real_report, tmp_path):
    browser = require(browser)
    page, metrics = real_report
    proj = metrics["projection"]
    assert 0 < len(proj["x"]) <= 2000 and len(proj["x"]) == len(proj["segment"])
    assert metrics["segment_migration"], "the second segmentation found no previous one"
    assert metrics["churn"]["gains"][-1]["captured"] == pytest.approx(1.0)
    charts = check_in_browser(browser, page, tmp_path, RUN_CHARTS)
    assert len(charts) >= len(RUN_CHARTS)
    check_screenshot(browser, page, tmp_path)


def test_full_metrics_report_renders_in_browser(browser, tmp_path):
    browser = require(browser)
    page = tmp_path / "report.html"
    page.write_text(render(full_metrics(), 50), encoding="utf-8")
    check_in_browser(browser, page, tmp_path, set(CHARTS))


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_the_check_notices_a_chart_that_did_not_draw(browser, tmp_path):
    """The load check is not a rubber stamp: an empty chart and a script error are caught."""
    browser = require(browser)
    page = tmp_path / "broken.html"
    text = render(full_metrics(), 50)
    # empty the sizes chart: its figure keeps an <svg> with nothing drawn in it
    text = re.sub(r'(<figure class="chart" id="chart-sizes"[^>]*><svg[^>]*>).*?</svg>',
                  r"\1</svg>", text, count=1, flags=re.S)  # fmt: skip
    page.write_text(text.replace("</body>", "<script>undefinedCall();</script></body>"))
    with pytest.raises(AssertionError, match="chart-sizes"):
        check_in_browser(browser, page, tmp_path, set())
    page.write_text(render(full_metrics(), 50).replace(
        "</body>", "<script>undefinedCall();</script></body>"))  # fmt: skip
    with pytest.raises(AssertionError, match="Uncaught"):
        check_in_browser(browser, page, tmp_path, set())
