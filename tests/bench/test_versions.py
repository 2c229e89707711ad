"""bench.versions: the variants it is given, its summary, and one tiny real run (this
checkout twice, with and without the queue), so it cannot rot between uses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.versions import Samples, Variant, summarize

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_a_variant_names_a_checkout_and_may_name_its_slots() -> None:
    assert Variant.parse("old=/x/y", "10000") == Variant("old", Path("/x/y"), "10000")
    assert Variant.parse("off=/x/y:0", "10000") == Variant("off", Path("/x/y"), "0")


@pytest.mark.parametrize("text", ["old", "=/x", "old="])
def test_a_variant_without_name_or_checkout_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="name=checkout"):
        Variant.parse(text, "10000")


def test_the_summary_compares_medians_with_the_first_variant() -> None:
    samples = {
        ("/api/chat", "old"): Samples([100.0, 110.0, 90.0], [200.0] * 3, [50.0, 50.0, 60.0]),
        ("/api/chat", "new"): Samples([120.0, 999.0, 105.0], [210.0] * 3, [60.0, 55.0, 70.0]),
    }

    rows = summarize(samples, ["old", "new"])

    assert [(r["variant"], r["cpu_us_per_request"], r["cpu_change_percent"]) for r in rows] == [
        ("old", 100.0, 0.0),
        ("new", 120.0, 20.0),
    ]
    assert rows[1]["added_us_per_request"] == 60.0
    assert rows[1]["added_change_percent"] == 20.0
    assert rows[1]["cpu_us_rounds"] == [105.0, 120.0, 999.0]


@pytest.mark.timeout(180)
def test_a_tiny_run_measures_each_variant(tmp_path: Path) -> None:
    out = tmp_path / "versions.json"
    completed = subprocess.run(
        [
            sys.executable, "-m", "bench.versions", f"off={PROJECT_ROOT}:0",
            f"on={PROJECT_ROOT}:10000", "--rounds", "2", "--requests", "20",
            "--json", str(out),
        ],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=170, check=False,
    )  # fmt: skip

    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert {(r["endpoint"], r["variant"]) for r in rows} == {
        (endpoint, variant)
        for endpoint in ("/api/chat", "/v1/chat/completions")
        for variant in ("off", "on")
    }
    assert all(r["cpu_us_per_request"] > 0 and len(r["cpu_us_rounds"]) == 2 for r in rows)
    assert "vs off" in completed.stdout


@pytest.mark.timeout(180)
def test_a_tiny_run_under_wrk_measures_each_variant(tmp_path: Path) -> None:
    out = tmp_path / "versions.json"
    completed = subprocess.run(
        [
            sys.executable, "-m", "bench.versions", f"only={PROJECT_ROOT}", "--rounds", "1",
            "--connections", "4", "--seconds", "1", "--json", str(out),
        ],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=170, check=False,
    )  # fmt: skip

    assert completed.returncode == 0, completed.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["connections"] == 4
    assert all(r["cpu_us_per_request"] > 0 for r in data["rows"])
