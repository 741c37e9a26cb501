"""`python -m fgpose.refine`: refined release pickle, skips, resume, overlays, bad arguments.

The real-data tests build a tiny dataset from the release: StanfordCars train images of the
one shipped car (``fgpose.annotations.EXAMPLE_CAR_MODEL_ID``), with v1 annotations as input and
reference masks rendered at the v2 pose (so refinement should move v1 towards v2). Only
``00001.jpg`` has its real photo; the others get 600x400 placeholder JPEGs (the search
reads only the photo's size). One image has no mask, one a corrupt photo.
"""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
from PIL import Image

from fgpose import annotations as anno_lib
from fgpose import buckets
from fgpose import camera, mesh as mesh_lib, raster
from fgpose.refine import __main__ as cli
from fgpose.refine import batching, inputs, journal, search

MODEL = anno_lib.EXAMPLE_CAR_MODEL_ID
SYNSET = "02958343"
N_GOOD = 6
BATCH = 4
# Small but enough for v1 -> v2 (1-3 steps per parameter): a few sweeps per alpha level.
FAST = ["--batch-size", str(BATCH), "--max-sweeps", "12", "--max-faces", "3000", "--no-progress"]


@pytest.fixture(scope="module")
def dataset(release_dir, release_split, tmp_path_factory):
    root = tmp_path_factory.mktemp("refine_data")
    cache = tmp_path_factory.mktemp("mesh_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(mesh_lib.CACHE_DIR_ENV, str(cache))
        v1 = release_split("StanfordCars", "train", 1)
        v2 = release_split("StanfordCars", "train", 2)
        keys = [k for k, a in v1.items() if a.model_id == MODEL and k != "00001.jpg"][: N_GOOD - 1 + 2]
        keys = ["00001.jpg"] + keys  # N_GOOD good ones, then one without mask, one with a corrupt photo
        no_mask, corrupt = keys[N_GOOD], keys[N_GOOD + 1]
        images, masks, cad = root / "images", root / "masks", root / "cad"
        for d in (images, masks, cad / SYNSET / MODEL):
            d.mkdir(parents=True)
        src_mesh = (release_dir / "CAD" / SYNSET / MODEL / "model.obj").resolve()
        (cad / SYNSET / MODEL / "model.obj").symlink_to(src_mesh)
        car = mesh_lib.load_mesh(src_mesh)
        rng = np.random.default_rng(0)
        for key in keys:
            if key == "00001.jpg":
                shutil.copy(release_dir / "Image/StanfordCars/cars_train/00001.jpg", images / key)
            elif key == corrupt:
                (images / key).write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
            else:
                Image.fromarray(rng.integers(0, 256, (400, 600, 3), dtype=np.uint8)).save(images / key)
            if key != no_mask:
                frame_h = camera.annotation_frame_height(600, 400)
                proj = camera.projection_matrix(v2[key].pose(), frame_h, image_size=(400, 600))
                sil = np.asarray(raster.silhouette(car.vertices, car.faces, proj, 400, 600))
                Image.fromarray(sil.astype(np.uint8) * 255).save(masks / (key[:-4] + ".png"))
        anno = root / "train_anno.pkl"
        anno_lib.save_annotations(anno, {k: v1[k] for k in keys})
        yield dict(root=root, keys=keys, good=keys[:N_GOOD], no_mask=no_mask, corrupt=corrupt, v1=v1, v2=v2,
                   anno=anno, base=["--annotations", str(anno), "--images", str(images), "--masks", str(masks),
                                    "--cad", str(cad)], cache=cache)


@pytest.fixture
def mesh_cache(dataset, monkeypatch):
    monkeypatch.setenv(mesh_lib.CACHE_DIR_ENV, str(dataset["cache"]))


@pytest.fixture(scope="module")
def full_run(dataset):
    out = dataset["root"] / "run" / "refined.pkl"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(mesh_lib.CACHE_DIR_ENV, str(dataset["cache"]))
        rc = cli.main(dataset["base"] + FAST + ["--dataset", "StanfordCars", "--out", str(out),
                                               "--json", str(out.with_suffix(".json")),
                                               "--overlays", str(out.parent / "overlays")])
    return dict(rc=rc, out=out, report=json.loads(out.with_suffix(".json").read_text()))


def _pose(rec):
    return np.array([rec[k] if isinstance(rec, dict) else getattr(rec, k) for k in camera.POSE_FIELDS])


@pytest.mark.slow
def test_refines_towards_v2(dataset, full_run, capsys):
    assert full_run["rc"] == 0
    out = full_run["out"]
    refined = anno_lib.load_annotations(out)
    assert list(refined) == dataset["keys"]  # same keys, same order
    with open(out, "rb") as fh:  # the release's own format: a plain dict of dicts
        raw = pickle.load(fh, encoding="latin1")
    assert isinstance(raw, dict) and set(raw) == set(dataset["keys"])
    for rec in raw.values():
        assert type(rec) is dict and set(rec) == set(anno_lib.FIELDS)
        assert all(type(rec[k]) is float for k in anno_lib.FLOAT_FIELDS) and type(rec["model_id"]) is str
    # Skipped images keep their v1 record exactly.
    for key in (dataset["no_mask"], dataset["corrupt"]):
        assert refined[key] == dataset["v1"][key]
    summary = full_run["report"]["summary"]
    assert summary["refined"] == N_GOOD and summary["skipped"] == 2
    assert summary["skipped_by_reason"] == {"mask missing": 1, "photo unreadable": 1}
    assert {s["key"]: s["reason"] for s in full_run["report"]["skipped"]} == {
        dataset["no_mask"]: "mask missing", dataset["corrupt"]: "photo unreadable"}
    assert summary["mesh_loads"] == 1
    # Hidden faces were dropped by default: the cache holds the visible faces (29,226 -> about
    # 20,000) and their decimation.
    assert summary["settings"]["drop_hidden_faces"] is True
    cached = sorted(len(np.load(f)["faces"]) for f in dataset["cache"].glob("*.npz"))
    assert any(2900 <= c <= 3000 for c in cached) and any(15000 < c < 25000 for c in cached), cached
    assert summary["mean_iou_after"] > summary["mean_iou_before"]
    assert summary["mean_iou_after"] >= 0.95
    # Poses move towards v2 (in a normalised distance: steps as units).
    eps = np.array(search.DEFAULT_STEPS)
    closer = 0
    for key in dataset["good"]:
        v1, v2, new = _pose(dataset["v1"][key]), _pose(dataset["v2"][key]), _pose(refined[key])
        closer += np.linalg.norm((new - v2) / eps) < np.linalg.norm((v1 - v2) / eps)
    assert closer >= N_GOOD - 1
    # Units of the reported changes.
    assert summary["mean_abs_delta"]["azimuth"]["unit"] == "deg" and summary["mean_abs_delta"]["f"]["unit"] == "px"
    assert not (out.parent / (out.name + journal.PARTIAL_SUFFIX)).exists()


@pytest.mark.slow
def test_coarse_to_fine_with_its_own_mesh(dataset, mesh_cache, tmp_path):
    """--coarse 2 with --coarse-max-faces: the coarse pass gets a mesh decimated separately
    (one more load per model) and the result is as good as the plain search's."""
    out = tmp_path / "coarse.pkl"
    rc = cli.main(dataset["base"] + FAST + ["--coarse", "2", "--coarse-max-faces", "1500", "--out", str(out),
                                            "--json", str(out.with_suffix(".json"))])
    assert rc == 0
    report = json.loads(out.with_suffix(".json").read_text())
    summary = report["summary"]
    assert summary["refined"] == N_GOOD and summary["mesh_loads"] == 2
    assert summary["mean_iou_after"] >= 0.95 and summary["mean_iou_after"] > summary["mean_iou_before"]
    assert summary["settings"]["coarse"] == 2 and summary["settings"]["coarse_max_faces"] == 1500


@pytest.mark.slow
def test_overlays(dataset, full_run):
    overlays = full_run["out"].parent / "overlays"
    for key in dataset["good"]:
        img = np.asarray(Image.open(overlays / (key[:-4] + ".png")))
        assert img.shape == (400, 600, 3)  # the photo's size (--overlay-width 600 of a 600x400 photo)
    assert not (overlays / (dataset["no_mask"][:-4] + ".png")).exists()
    # On the real photo: red (v1) and green (refined) outlines are drawn.
    img = np.asarray(Image.open(overlays / "00001.png")).astype(int)
    red = (img[..., 0] > 200) & (img[..., 1] < 100) & (img[..., 2] < 100)
    green = (img[..., 1] > 200) & (img[..., 0] < 100) & (img[..., 2] < 100)
    assert red.sum() > 200 and green.sum() > 200


@pytest.mark.slow
def test_resume(dataset, full_run, mesh_cache, monkeypatch, tmp_path):
    out = tmp_path / "refined.pkl"
    partial = tmp_path / ("refined.pkl" + journal.PARTIAL_SUFFIX)
    args = dataset["base"] + FAST + ["--out", str(out), "--json", str(tmp_path / "r.json")]
    real_refine = search.refine
    v1_of = {tuple(np.float32(_pose(dataset["v1"][k]))): k for k in dataset["good"]}
    calls = []

    def interrupted(*a, **kw):
        if calls:
            raise KeyboardInterrupt
        calls.append({v1_of[tuple(np.float32(p))] for p in np.asarray(a[2])})
        return real_refine(*a, **kw)

    monkeypatch.setattr(cli.search, "refine", interrupted)
    assert cli.main(args) == 130
    assert not out.exists() and partial.exists()
    first = calls[0]
    assert len(first) == BATCH
    saved = {}
    for line in partial.read_text().splitlines()[1:]:
        saved.update({r["key"]: r for r in json.loads(line)["results"]})
    assert set(saved) == first
    # A torn line (killed mid-write) is ignored.
    with open(partial, "a") as fh:
        fh.write('{"results": [{"key": "00001.j')

    calls.clear()

    def recording(*a, **kw):
        calls.append({v1_of[tuple(np.float32(p))] for p in np.asarray(a[2])})
        return real_refine(*a, **kw)

    monkeypatch.setattr(cli.search, "refine", recording)
    assert cli.main(args) == 0
    second = set().union(*calls)
    assert second == set(dataset["good"]) - first  # nothing recomputed, nothing lost
    assert not partial.exists()
    refined = anno_lib.load_annotations(out)
    assert list(refined) == dataset["keys"]
    report = json.loads((tmp_path / "r.json").read_text())
    assert sorted(r["key"] for r in report["images"]) == sorted(dataset["good"])  # each exactly once
    assert report["summary"]["resumed"] == BATCH and report["summary"]["refined_this_run"] == N_GOOD - BATCH
    for key in first:  # finished results are kept as they were
        assert refined[key].to_record() == saved[key]["refined"]
    # Same results as the uninterrupted run.
    full = anno_lib.load_annotations(full_run["out"])
    for key in dataset["good"]:
        np.testing.assert_allclose(_pose(refined[key]), _pose(full[key]), rtol=0, atol=1e-6)


@pytest.mark.slow
def test_resume_with_other_settings(dataset, mesh_cache, monkeypatch, tmp_path, capsys):
    out = tmp_path / "refined.pkl"
    monkeypatch.setattr(cli.search, "refine", lambda *a, **kw: (_ for _ in ()).throw(KeyboardInterrupt))
    assert cli.main(dataset["base"] + FAST + ["--out", str(out), "--limit", "2"]) == 130
    rc = cli.main(dataset["base"] + FAST + ["--out", str(out), "--schedule", "parallel"])
    err = capsys.readouterr().err
    assert rc == 2 and "other settings" in err and "schedule: 'paper' -> 'parallel'" in err and "--restart" in err


@pytest.mark.slow
def test_missing_mesh_is_skipped(dataset, mesh_cache, tmp_path, capsys):
    empty_cad = tmp_path / "cad"
    empty_cad.mkdir()
    args = dataset["base"][:-1] + [str(empty_cad), "--out", str(tmp_path / "o.pkl"), "--no-progress"]
    assert cli.main(args) == 1  # nothing could be refined
    err = capsys.readouterr().out
    assert "mesh missing: 6" in err and "mask missing: 1" in err and "photo unreadable: 1" in err
    assert anno_lib.load_annotations(tmp_path / "o.pkl") == {k: dataset["v1"][k] for k in dataset["keys"]}


def _nowhere_args(tmp_path):
    """Required arguments that all point into an empty directory."""
    return ["--annotations", str(tmp_path / "a.pkl"), "--images", str(tmp_path), "--masks", str(tmp_path),
            "--cad", str(tmp_path), "--out", str(tmp_path / "o.pkl")]


def test_bad_arguments(tmp_path, capsys):
    base = _nowhere_args(tmp_path)
    for extra, message in [
        (["--batch-size", "0"], "--batch-size"),
        (["--schedule", "greedy"], "--schedule"),
        (["--steps", "1", "2"], "--steps"),
        (["--steps", "1", "1", "1", "1", "1", "1", "-1"], "steps must be 7 positive"),
        (["--max-sweeps", "x"], "--max-sweeps"),
        (["--coarse", "2", "--schedule", "release"], "coarse-to-fine search needs an alpha schedule"),
        (["--coarse", "2", "--coarse-alpha", "2"], "coarse_alpha must lie in"),
        (["--images", str(tmp_path / "nope")], "is not a directory"),
        (["--out", str(tmp_path / "a.pkl")], "must not overwrite"),
    ]:
        with pytest.raises(SystemExit) as exc:
            cli.main(base + extra)
        assert exc.value.code == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main([])
    assert exc.value.code == 2 and "required" in capsys.readouterr().err
    # A missing or unsafe annotation file: exit code 2 with the file named.
    assert cli.main(base) == 2
    assert "a.pkl" in capsys.readouterr().err
    (tmp_path / "a.pkl").write_bytes(pickle.dumps({"k": complex(1, 2)}))
    assert cli.main(base) == 2
    assert "refusing to unpickle" in capsys.readouterr().err
    # --device gpu without a GPU: a clear error, not a crash.
    import jax

    rc = cli.main(base + ["--device", "gpu"])
    assert rc == 2
    if jax.default_backend() == "cpu":
        assert "--device gpu: no GPU available" in capsys.readouterr().err


def test_mask_reading_and_paths(tmp_path):
    Image.fromarray(np.array([[0, 3], [0, 0]], np.uint8), mode="L").save(tmp_path / "g.png")
    np.testing.assert_array_equal(inputs.read_mask(tmp_path / "g.png"), [[False, True], [False, False]])
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[1, 1, 0] = 9
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "c.png")
    np.testing.assert_array_equal(inputs.read_mask(tmp_path / "c.png"), [[False, False], [False, True]])
    assert inputs.mask_path(tmp_path, "a/b/c.d.jpg") == tmp_path / "a" / "b" / "c.d.png"
    with pytest.raises(ValueError):
        inputs.mask_path(tmp_path, "../x.jpg")
    assert inputs.mesh_candidates(tmp_path, "m", "FGVC_Aircraft") == [tmp_path / "02691156/m/model.obj",
                                                                      tmp_path / "m/model.obj"]
    assert [buckets.refine_count_bucket(n) for n in (1, 16, 17, 100, 3000, 3072, 3073)] == [
        16, 16, 18, 104, 3072, 3072, 3328]


def test_robust_objective_soft_masks_and_reference_check(dataset, mesh_cache, tmp_path):
    """--objective soft+band+map on NPY probability maps (blurred masks); one image's map shows
    something else entirely: it is flagged and keeps its v1 record, the others are refined."""
    import cv2

    soft = tmp_path / "soft"
    soft.mkdir()
    good = dataset["good"]
    for key in good:
        mask = np.asarray(Image.open(dataset["root"] / "masks" / (key[:-4] + ".png"))) > 0
        prob = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 2.0)
        if key == good[1]:  # a segmentation of another object, in a corner
            prob = np.zeros_like(prob)
            prob[:60, :60] = 0.9
        np.save(soft / (key[:-4] + ".npy"), prob)
    base = list(dataset["base"])
    base[base.index("--masks") + 1] = str(soft)
    out = tmp_path / "soft.pkl"
    rc = cli.main(base + FAST + ["--objective", "soft+band:2+map", "--out", str(out),
                                 "--json", str(out.with_suffix(".json"))])
    assert rc == 0
    report = json.loads(out.with_suffix(".json").read_text())
    summary, records = report["summary"], {r["key"]: r for r in report["images"]}
    assert summary["settings"]["objective"] == "band:2+soft+map:0.002"
    assert summary["settings"]["min_reference_iou"] == 0.5
    assert summary["flagged"] == [good[1]]
    assert records[good[1]]["flagged"] and records[good[1]]["initial_iou"] < 0.1 and records[good[1]]["moves"] == 0
    refined = anno_lib.load_annotations(out)
    assert refined[good[1]] == dataset["v1"][good[1]]
    others = [k for k in good if k != good[1]]
    assert not any(records[k]["flagged"] for k in others)
    before = np.mean([records[k]["initial_iou"] for k in others])
    after = np.mean([records[k]["iou"] for k in others])
    assert after > before and after >= 0.95, (before, after)


def test_objective_flags_bad_values(tmp_path, capsys):
    base = _nowhere_args(tmp_path)
    for extra, message in [
        (["--objective", "dice"], "unknown objective term 'dice'"),
        (["--objective", "band:-1"], "band width must be > 0"),
        (["--objective", "map:x"], "is not a number"),
        (["--objective", "band+band"], "given twice"),
        (["--min-reference-iou", "1.5"], "expected a fraction in [0, 1]"),
        (["--min-reference-iou", "nan"], "expected a fraction in [0, 1]"),
    ]:
        with pytest.raises(SystemExit) as exc:
            cli.main(base + extra)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "--objective" in err or "--min-reference-iou" in err
        assert message in err, err


def test_reading_soft_references(tmp_path):
    grey = np.array([[0, 128, 255], [0, 0, 64]], np.uint8)
    Image.fromarray(grey, mode="L").save(tmp_path / "g.png")
    np.testing.assert_allclose(inputs.read_reference(tmp_path / "g.png", soft=True), grey / 255.0)
    np.testing.assert_array_equal(inputs.read_reference(tmp_path / "g.png"), grey != 0)
    Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), mode="L").save(tmp_path / "b.png")  # two levels: binary
    np.testing.assert_array_equal(inputs.read_reference(tmp_path / "b.png", soft=True), [[False, True], [True, False]])
    np.save(tmp_path / "k.npy", np.array([[0.2, 0.7]], np.float32))
    assert inputs.mask_path(tmp_path, "k.jpg") == tmp_path / "k.npy"  # no k.png
    np.testing.assert_allclose(inputs.read_reference(tmp_path / "k.npy", soft=True), [[0.2, 0.7]])
    np.testing.assert_array_equal(inputs.read_reference(tmp_path / "k.npy"), [[False, True]])
    np.save(tmp_path / "bad.npy", np.array([[1.5]]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        inputs.read_reference(tmp_path / "bad.npy", soft=True)
    assert inputs.mask_path(tmp_path, "g.jpg") == tmp_path / "g.png"
    frame = search.to_annotation_frame(np.full((20, 30), 0.25, np.float32))
    assert frame.dtype == np.float32 and frame.shape == (200, 300) and np.all(frame == 0.25)
