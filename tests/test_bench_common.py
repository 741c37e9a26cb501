"""scripts/_bench_common.py, the harness of the benchmark scripts, and that each script starts."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("_bench_common", SCRIPTS / "_bench_common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_markdown_table(bench):
    text = bench.markdown_table(["a", "bb", "c"], [[1, "x", 2.5], ["y", 3, "—"]], "lrr")
    assert text.splitlines() == ["| a | bb | c |", "|---|---:|---:|", "| 1 | x | 2.5 |", "| y | 3 | — |"]
    assert bench.markdown_table(["a"], []) == "| a |\n|---|"
    with pytest.raises(ValueError, match="align"):
        bench.markdown_table(["a", "b"], [], "l")


def test_text_table_places_titles_like_values(bench):
    text = bench.text_table([("name", "<6"), ("rate", ">8.2f"), ("note", "")], [["ab", 3.14159, "ok"], ["c", 10, "-"]])
    assert text.splitlines() == [
        "name       rate note",
        "-" * 20,
        "ab         3.14 ok",
        "c         10.00 -",
    ]


def test_write_json_creates_parents(bench, tmp_path, capsys):
    out = bench.write_json(tmp_path / "a" / "b.json", {"x": [1, 2.5]}, indent=1)
    assert json.loads(out.read_text()) == {"x": [1, 2.5]}
    assert f"wrote {out}" in capsys.readouterr().err


def test_timed_calls_waits_for_the_result(bench):
    calls = []
    times = bench.timed_calls(lambda: calls.append(1) or np.ones(3), 4)
    assert len(times) == 4 and len(calls) == 4 and all(t >= 0 for t in times)
    assert bench.median_time(lambda: None, 3) >= 0


def test_release_dir_errors_exit_with_the_hint(bench, tmp_path, monkeypatch):
    monkeypatch.delenv("FGPOSE_RELEASE_DIR", raising=False)
    with pytest.raises(SystemExit, match="--release-dir / FGPOSE_RELEASE_DIR"):
        bench.resolve_release_dir(None)
    with pytest.raises(SystemExit, match="not the finegrained_pose release root"):
        bench.resolve_release_dir(str(tmp_path))


def test_example_car_annotations_on_the_release(bench, release_dir):
    from fgpose import annotations as A

    path = bench.example_car_path(release_dir)
    assert path == release_dir / "CAD" / "02958343" / A.EXAMPLE_CAR_MODEL_ID / "model.obj" and path.is_file()
    for version in (1, 2):
        rows = bench.example_car_annotations(release_dir, version)
        # The shared data's README: 85 StanfordCars annotations use the car, 43 train and 42 test.
        assert [s for s, _ in rows].count("train") == 43 and [s for s, _ in rows].count("test") == 42
        assert all(a.model_id == A.EXAMPLE_CAR_MODEL_ID for _, a in rows)
        assert [s for s, _ in rows] == sorted(s for s, _ in rows)[::-1]  # train first, then test
        train_keys = [a.key for s, a in rows if s == "train"]
        assert train_keys == sorted(train_keys) and "00001.jpg" in train_keys


@pytest.mark.parametrize("script", ["bench_raster.py", "bench_refine.py", "bench_builders.py", "bench_train.py"])
def test_bench_help_runs_from_any_directory(script, tmp_path):
    """``python scripts/bench_x.py --help`` works from elsewhere and without PYTHONPATH: the
    harness puts this checkout first on sys.path."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, str(SCRIPTS / script), "--help"], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: {script}")
