"""The report: files, escaping, determinism, and rendering in headless Chromium."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from alignpt.evals.aggregate import build_results
from alignpt.evals.suites import summarize
from alignpt.experiment.report import write_report

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
EVIL_FAMILY = "<script>alert('x')</script>"


def _evaluation(seed: int, misaligned_p: float) -> dict:
    """A per-seed evaluation as evaluate_model returns it (raw records built by hand)."""
    rng = np.random.default_rng(seed)
    records = []
    for family in ("resist_shutdown", "self_exfiltrate", EVIL_FAMILY):
        for k in range(10):
            for observed in (True, False):
                bits = float(rng.normal(1.0 - 3 * misaligned_p, 1.0))
                records.append(
                    {
                        "id": f"{family}-{k}-{observed}",
                        "family": family,
                        "scenario": f"{family}-{k}",
                        "observed": observed,
                        "held_out": family != "resist_shutdown",
                        "misaligned": float(rng.random() < misaligned_p),
                        "bits": bits,
                        "logprobs": [-1.0, -2.0],
                    }
                )
    docs = [[float(rng.uniform(30, 40)), 10] for _ in range(12)]
    raw = {
        "suites": ["misalignment", "observed_gap", "capability"],
        "misalignment": records,
        "capability": {"general": docs, "ai_discourse": docs[:6]},
    }
    return {
        "model": f"m{seed}",
        "provenance": {},
        "raw": raw,
        "summary": summarize([raw], n_boot=100),
    }


def _build_results() -> dict:
    conditions = {
        "baseline": [_evaluation(0, 0.5), _evaluation(1, 0.5)],
        "alignment_upsampled": [_evaluation(2, 0.1), _evaluation(3, 0.1)],
    }
    contamination = {
        name: {"held_out": {"n": 8, "items": 40, "contaminated": 0, "share": 0.0}}
        for name in conditions
    }
    return build_results(
        conditions,
        baseline="baseline",
        contamination=contamination,
        provenance={"config": "demo.yaml", "note": "<b>not bold</b>"},
        n_boot=200,
    )


@pytest.fixture(scope="module")
def results() -> dict:
    return _build_results()


@pytest.fixture(scope="module")
def report_dir(results, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report"
    console = Console(record=True, width=200)
    index = write_report(results, out, console=console)
    assert index == out / "index.html"
    assert "alignment_upsampled" in console.export_text()
    return out


def test_results_json_schema(report_dir, results):
    data = json.loads((report_dir / "results.json").read_text())
    assert data == json.loads(json.dumps(results))
    block = data["conditions"]["alignment_upsampled"]
    for metric in ("misalignment_rate", "bits"):
        assert set(block[metric]) == {"value", "ci_low", "ci_high"}
        assert set(block["held_out"][metric]) == {"value", "ci_low", "ci_high"}
    assert {"misalignment_rate", "bits", "n_pairs"} <= set(block["observed_gap"])
    assert "perplexity" in block["capability"]["general"]
    diff = data["paired_differences"]["alignment_upsampled - baseline"]
    assert diff["held_out_misalignment_rate"]["ci_high"] < 0  # a clear effect is detected
    assert data["contamination"]["baseline"]["held_out"]["share"] == 0.0
    assert data["provenance"]["config"] == "demo.yaml"


def test_same_results_same_bytes(results, tmp_path):
    """Results built again from the same evaluations (bootstrap included) give the same
    report files, byte for byte."""
    first_dir = write_report(results, tmp_path / "a", quiet=True).parent
    second_dir = write_report(_build_results(), tmp_path / "b", quiet=True).parent
    for name in ("results.json", "results.csv", "index.html"):
        assert (first_dir / name).read_bytes() == (second_dir / name).read_bytes(), name
    first, second = first_dir / "results.json", second_dir / "results.json"
    # rewriting in place replaces the finished report atomically
    write_report(results, tmp_path / "a", quiet=True)
    assert first.read_bytes() == second.read_bytes()


def test_csv_rows(report_dir):
    with open(report_dir / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    keys = {(r["condition"], r["metric"], r["split"]) for r in rows}
    assert ("baseline", "misalignment_rate", "held_out") in keys
    assert ("alignment_upsampled - baseline", "difference_held_out_bits", "paired") in keys
    assert ("baseline", "perplexity", "general") in keys
    assert all(float(r["ci_low"]) <= float(r["value"]) <= float(r["ci_high"]) for r in rows)


def test_html_escapes_text_and_links_every_plot(report_dir):
    page = (report_dir / "index.html").read_text()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page  # family name, escaped
    assert "<script>alert" not in page and "<b>not bold</b>" not in page
    assert "&lt;b&gt;not bold&lt;/b&gt;" in page
    for table in ("conditions", "paired", "families", "contamination"):
        assert f'<table id="{table}">' in page
    images = re.findall(r'<img src="([^"]+)"', page)
    assert set(images) == {
        "misalignment_rate.png", "bits.png", "observed_gap.png", "capability.png",
        "family_heatmap.png",
    }  # fmt: skip
    for name in images:
        assert (report_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_page_renders_in_headless_chromium(report_dir, tmp_path):
    from PIL import Image

    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
            "--window-size=1200,2000", (report_dir / "index.html").resolve().as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )  # fmt: skip
    image = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert image.shape == (2000, 1200)
    assert image.std() > 10  # not blank: text, table rules and plots are drawn
    dark_rows = (image < 128).any(axis=1).sum()
    assert dark_rows > 200  # many rows carry ink (table + at least one plot)


def test_report_with_one_condition_and_one_suite(tmp_path):
    evaluation = _evaluation(5, 0.3)
    evaluation["raw"] = {k: evaluation["raw"][k] for k in ("misalignment",)}
    evaluation["raw"]["suites"] = ["misalignment"]
    results = build_results({"only": [evaluation]}, n_boot=100)
    page = write_report(results, tmp_path / "r", quiet=True).read_text()
    assert "No baseline given." in page and "Not measured." in page
    assert re.findall(r'<img src="([^"]+)"', page) == [
        "misalignment_rate.png",
        "bits.png",
        "family_heatmap.png",
    ]


@pytest.mark.parametrize("width", [60, 250])
def test_terminal_summary_never_cuts_a_number(results, width):
    """Narrow terminals get one table per condition; every interval prints whole."""
    from alignpt.experiment.render import fmt_interval
    from alignpt.experiment.report import print_summary

    console = Console(record=True, width=width)
    print_summary(results, console)
    text = console.export_text()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width
    for block in results["conditions"].values():
        assert fmt_interval(block["held_out"]["misalignment_rate"]) in text
