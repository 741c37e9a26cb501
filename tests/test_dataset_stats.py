"""scripts/dataset_stats.py (Table 1 counts, Figure 7 PNGs) and fgpose.viz.pose_histograms."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from fgpose import annotations as anno
from fgpose import viz

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "dataset_stats.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("dataset_stats", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _wrap_turn(x):
    """Reference wrap into [0, 2 pi) by repeated +- 2 pi (float64)."""
    y = np.array(x, np.float64)
    while (y < 0).any() or (y >= 2 * np.pi).any():
        y = np.where(y < 0, y + 2 * np.pi, y)
        y = np.where(y >= 2 * np.pi, y - 2 * np.pi, y)
    return y


def _wrap_signed(x):
    """Reference wrap into (-pi, pi] by repeated +- 2 pi (float64)."""
    y = np.array(x, np.float64)
    while (y <= -np.pi).any() or (y > np.pi).any():
        y = np.where(y <= -np.pi, y + 2 * np.pi, y)
        y = np.where(y > np.pi, y - 2 * np.pi, y)
    return y


def _reference(poses, field, angle_bins, bins):
    col = anno.FLOAT_FIELDS.index(field)
    x = poses[:, col].astype(np.float64)
    if field == "azimuth":
        x = _wrap_turn(x)
        edges = np.linspace(0, 2 * np.pi, angle_bins + 1)
    elif field in ("elevation", "theta"):
        x = _wrap_signed(x)
        edges = np.linspace(-np.pi, np.pi, angle_bins + 1)
    elif field in ("distance", "f"):
        edges = np.geomspace(x.min(), x.max(), bins + 1)
    else:
        edges = np.histogram_bin_edges(x, bins)
    return x, edges, np.histogram(x, edges)[0]


def _bars(fig, field):
    axes = [ax for ax in fig.axes if ax.get_label() == field]
    assert len(axes) == 1, field
    (container,) = axes[0].containers
    patches = container.patches
    heights = np.array([p.get_height() for p in patches])
    lefts = np.array([p.get_x() for p in patches])
    widths = np.array([p.get_width() for p in patches])
    return heights, lefts, widths


def _check_figure(fig, poses, angle_bins=36, bins=40):
    for field in anno.FLOAT_FIELDS:
        x, edges, counts = _reference(poses, field, angle_bins, bins)
        heights, lefts, widths = _bars(fig, field)
        np.testing.assert_array_equal(heights, counts, err_msg=field)
        np.testing.assert_allclose(lefts, edges[:-1], rtol=1e-12, atol=1e-12, err_msg=field)
        np.testing.assert_allclose(lefts + widths, edges[1:], rtol=1e-12, atol=1e-12, err_msg=field)
        assert heights.sum() == len(poses), field  # every value lands in a bin (wrapped angles)


def test_pose_histograms_match_numpy(tmp_path):
    rng = np.random.default_rng(0)
    n = 500
    poses = np.stack([
        rng.uniform(-2 * np.pi, 4 * np.pi, n),   # azimuth, far outside [0, 2 pi)
        rng.normal(0.1, 0.3, n),
        rng.uniform(-4, 4, n),                   # theta, partly outside (-pi, pi]
        rng.lognormal(0.2, 0.8, n),
        rng.lognormal(6.0, 1.0, n),
        rng.normal(0, 30, n),
        rng.normal(-5, 20, n),
    ], axis=1)
    # Values on the wrap boundaries.
    poses[:4, 0] = [0.0, 2 * np.pi, -2 * np.pi, np.pi]
    poses[:4, 2] = [np.pi, -np.pi, 3 * np.pi, 0.0]
    fig = viz.pose_histograms(poses, "synthetic", angle_bins=24, bins=30)
    _check_figure(fig, poses, angle_bins=24, bins=30)
    # The wrapped values hit the documented ranges.
    assert viz.wrap_turn(np.array([2 * np.pi]))[0] == 0.0
    assert viz.wrap_signed(np.array([-np.pi]))[0] == np.pi
    np.testing.assert_allclose(viz.wrap_turn(poses[:, 0]), _wrap_turn(poses[:, 0]), atol=1e-12)
    np.testing.assert_allclose(viz.wrap_signed(poses[:, 2]), _wrap_signed(poses[:, 2]), atol=1e-12)
    path = tmp_path / "h.png"
    fig.savefig(path, dpi=40)
    assert Image.open(path).size[0] > 100
    with pytest.raises(ValueError):
        viz.pose_histograms(np.zeros((0, 7)))


def test_counts_match_release(release_dir, release_split, script):
    for ds, paper in script.PAPER_TABLE1.items():
        info = anno.get_dataset(ds)
        for version in info.versions:
            splits = script.load_dataset(release_dir, ds, f"v{version}")
            row = script.dataset_counts(release_dir, ds, splits, f"v{version}")
            train = release_split(ds, "train", version)
            test = release_split(ds, "test", version)
            assert (row["train"], row["test"], row["total"]) == (len(train), len(test), len(train) + len(test))
            assert (row["classes"], row["train"], row["test"]) == (paper["classes"], paper["train"], paper["test"])
            models = {a.model_id for a in train.values()} | {a.model_id for a in test.values()}
            assert row["cad_models"] == len(models)
            # Every used model is a class model of the dataset's list.
            assert models <= set(anno.load_class_models(release_dir, ds))
    assert sum(p["classes"] for p in script.PAPER_TABLE1.values()) == script.PAPER_TOTAL_CLASSES == 409
    assert sum(p["train"] + p["test"] for p in script.PAPER_TABLE1.values()) == script.PAPER_TOTAL_IMAGES


def test_script_writes_figures_and_json(release_dir, script, tmp_path, capsys):
    out = tmp_path / "stats"
    assert script.main(["--release-dir", str(release_dir), "--out", str(out), "--version", "v2",
                        "--datasets", "CompCars", "FGVC_Aircraft"]) == 0
    printed = capsys.readouterr().out
    assert "CompCars3D" in printed and "DIFFERS" not in printed
    summary = json.loads((out / "dataset_stats.json").read_text())
    assert summary["datasets"]["CompCars"]["version"] == "v1"  # no v2 for CompCars
    assert summary["datasets"]["FGVC_Aircraft"]["version"] == "v2"
    assert summary["datasets"]["FGVC_Aircraft"]["train"] == 6667
    assert summary["total"]["total"] == 3798 + 1898 + 10000
    for ds in ("CompCars3D", "FGVC-Aircraft3D"):
        png = out / f"{ds}.png"
        assert png.is_file() and Image.open(png).size == (1600, 800)
    # The drawn histogram of FGVC v2 equals NumPy's on the release's poses.
    splits = script.load_dataset(release_dir, "FGVC_Aircraft", "v2")
    poses = script.poses_array(splits)
    assert poses.shape == (10000, 7)
    _check_figure(viz.pose_histograms(poses, "FGVC v2"), poses)
