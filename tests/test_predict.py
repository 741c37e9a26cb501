"""``python -m fgpose.predict`` and its library modules.

* :mod:`fgpose.roi_paste` against a per-pixel float64 NumPy reference;
* :mod:`fgpose.photos`: EXIF orientation, greyscale/CMYK/palette/16-bit conversion, corrupt files;
* the CLI end to end with the real tiny detector trained for 2 steps (``configs/tiny.py`` as in
  ``tests/test_train.py``) on the release's real photos: every output exists and reads back,
  ``poses.pkl`` loads with :func:`fgpose.annotations.load_annotations`, ``P`` in the JSON equals
  an independent float64 recomputation from the JSON's own pose; corrupt JPEGs are skipped and
  reported; an empty folder and a missing workdir give rc 2 and a message;
* the location-field outputs (mask, field) through :func:`fgpose.prediction_writer.write_prediction`
  with a stub prediction row (the detector on this branch has no field head), and the
  CAD-mesh overlay with a known mesh.
"""

from __future__ import annotations

import io
import json
import pathlib
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import test_train as tt  # noqa: E402

from fgpose import annotations as anno_lib  # noqa: E402
from fgpose import photos, predict, prediction_writer  # noqa: E402
from fgpose.roi_paste import paste_roi  # noqa: E402
from tests import reference  # noqa: E402

RELEASE_PHOTOS = {
    "00001.jpg": "Image/StanfordCars/cars_train/00001.jpg",
    "0034309.jpg": "Image/FGVC_Aircraft/0034309.jpg",
    "100/213/2010/27bb6c344896a5.jpg": "Image/CompCars/image/100/213/2010/27bb6c344896a5.jpg",
}


# ----------------------------------------------------------------------------- references


def _projection_f64(pose, h, w):
    """P in original pixels (float64, :func:`tests.reference.projection_original`)."""
    return reference.projection_original(np.asarray(pose, np.float64), (h * 300) // w, (h, w))


def _paste_reference(values, box, hw):
    """Per-pixel bilinear paste, float64 loops: bin centres at box + (i + 0.5) * size / S,
    edge bins extended to the box border, 0 outside the box."""
    v = np.asarray(values, np.float64)
    s = v.shape[0]
    y0, x0, y1, x1 = box
    out = np.zeros((hw[0], hw[1]) + v.shape[2:])
    for r in range(hw[0]):
        cy = r + 0.5
        if not y0 <= cy < y1:
            continue
        ty = min(max((cy - y0) / (y1 - y0) * s - 0.5, 0.0), s - 1.0)
        for c in range(hw[1]):
            cx = c + 0.5
            if not x0 <= cx < x1:
                continue
            tx = min(max((cx - x0) / (x1 - x0) * s - 0.5, 0.0), s - 1.0)
            i, j = int(np.floor(ty)), int(np.floor(tx))
            i2, j2 = min(i + 1, s - 1), min(j + 1, s - 1)
            fy, fx = ty - i, tx - j
            out[r, c] = ((1 - fy) * (1 - fx) * v[i, j] + (1 - fy) * fx * v[i, j2]
                         + fy * (1 - fx) * v[i2, j] + fy * fx * v[i2, j2])
    return out


# ----------------------------------------------------------------------------- roi_paste


@pytest.mark.parametrize("box", [(5.3, 7.9, 31.2, 40.6), (-4.0, 30.5, 20.25, 70.0), (10.0, 10.0, 12.5, 11.0)])
def test_paste_roi_matches_float64_reference(box):
    rng = np.random.default_rng(0)
    s = 7
    pattern = rng.normal(size=(s, s, 3))
    hw = (36, 64)  # the second box runs off the image's top and right
    got = paste_roi(pattern, box, hw)
    ref = _paste_reference(pattern, box, hw)
    assert got.shape == (36, 64, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    got1 = paste_roi(pattern[..., 0], box, hw)
    np.testing.assert_allclose(got1, ref[..., 0], rtol=1e-5, atol=1e-5)


def test_paste_roi_reproduces_a_linear_ramp_and_its_bin_centres():
    """A field linear in the bin index is reproduced exactly at every interior pixel, and each
    bin's value sits at its documented centre."""
    s = 4
    y0, x0, y1, x1 = 8.0, 4.0, 24.0, 36.0  # 16 x 32 px: bins of 4 x 8 px
    i, j = np.meshgrid(np.arange(s), np.arange(s), indexing="ij")
    ramp = np.stack([i * 1.0, j * 1.0], -1)
    got = paste_roi(ramp, (y0, x0, y1, x1), (32, 40))
    # bin (1, 2) centre: y = 8 + 1.5 * 4 = 14, x = 4 + 2.5 * 8 = 24 -> between pixels 13|14 and 23|24
    np.testing.assert_allclose(got[13, 23], [1 - 0.125, 2 - 1 / 16], atol=1e-6)
    np.testing.assert_allclose(got[14, 24], [1 + 0.125, 2 + 1 / 16], atol=1e-6)
    assert np.all(got[:8] == 0) and np.all(got[24:] == 0) and np.all(got[:, :4] == 0) and np.all(got[:, 36:] == 0)
    assert paste_roi(ramp, (np.nan, 0, 1, 1), (4, 4)).sum() == 0  # non-finite box: all fill


# ----------------------------------------------------------------------------- photos


def _jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def test_read_photo_applies_exif_orientation_and_converts_modes(tmp_path):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:5, :10] = (250, 10, 10)  # a red block at the top-left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: a viewer turns it 90 degrees clockwise
    (tmp_path / "rot.jpg").write_bytes(_jpeg_bytes(Image.fromarray(rgb), exif=exif, quality=95))
    got = photos.read_photo(tmp_path / "rot.jpg")
    assert got.shape == (30, 20, 3) and got.dtype == np.uint8
    assert got[2, -3, 0] > 200 and got[-3, 2, 0] < 60  # the red block is now top-right
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "pal.png")
    Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(tmp_path / "grey16.png")
    for name in ("cmyk.jpg", "grey.png", "pal.png", "grey16.png"):
        got = photos.read_photo(tmp_path / name)
        assert got.shape == (20, 30, 3) and got.dtype == np.uint8, name
        assert got[2, 2, 0] > 200 and got[15, 25].max() < 40, name
    np.testing.assert_array_equal(photos.read_photo(tmp_path / "grey.png"), np.repeat(rgb[..., :1], 3, -1))
    np.testing.assert_array_equal(photos.read_photo(tmp_path / "grey16.png"), np.repeat(rgb[..., :1], 3, -1))


def test_read_photo_rejects_corrupt_files(tmp_path, release_dir):
    data = (release_dir / RELEASE_PHOTOS["00001.jpg"]).read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (tmp_path / "garbage.jpg").write_bytes(b"not a jpeg at all" * 10)
    (tmp_path / "empty.png").write_bytes(b"")
    for name in ("truncated.jpg", "garbage.jpg", "empty.png"):
        with pytest.raises(photos.PhotoError, match=name):
            photos.read_photo(tmp_path / name)


def test_find_images_keys_are_relative_paths(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for rel in ("x.JPG", "a/y.png", "a/b/z.jpeg", "a/notes.txt"):
        (tmp_path / rel).write_bytes(b"")
    found, problems = photos.find_images([tmp_path, tmp_path / "a" / "y.png", tmp_path / "missing"])
    assert [k for k, _ in found] == ["a/b/z.jpeg", "a/y.png", "x.JPG", "y.png"]
    assert [p["reason"] for p in problems] == ["no such file or directory"]
    again, problems = photos.find_images([tmp_path / "a" / "y.png", tmp_path / "a" / "y.png"])
    assert len(again) == 1 and "already has the key" in problems[0]["reason"]


# ----------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The real tiny detector (configs/tiny.py at 64 px, 3 classes) trained for 2 steps."""
    from fgpose import train

    work = tmp_path_factory.mktemp("run")
    config = tt._real_config(2)
    res = train.train_and_evaluate(config, work, train_iterator_fn=tt.train_iter_fn(tt.make_examples(8, seed=3)),
                                   eval_fn=lambda s, step: None, num_classes=tt.NUM_CLASSES, progress=False)
    assert res["step"] == 2 and (work / "config.json").exists()
    return work


@pytest.fixture(scope="module")
def prediction(workdir, tmp_path_factory, release_dir):
    """fgpose.predict on the release's three photos plus two corrupt JPEGs, batch size 2."""
    images = tmp_path_factory.mktemp("images")
    for key, rel in RELEASE_PHOTOS.items():
        (images / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(release_dir / rel, images / key)
    data = (release_dir / RELEASE_PHOTOS["00001.jpg"]).read_bytes()
    (images / "bad" / "truncated.jpg").parent.mkdir()
    (images / "bad" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (images / "bad" / "garbage.jpg").write_bytes(b"\xff\xd8\xff garbage")
    out = tmp_path_factory.mktemp("out")
    import contextlib

    text = io.StringIO()
    with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
        rc = predict.main(["--workdir", str(workdir), "--images", str(images), "--out", str(out), "--batch_size", "2"])
    return rc, out, images, text.getvalue()


def test_predict_writes_every_output_on_real_photos(prediction):
    rc, out, images, log = prediction
    assert rc == 0, log
    doc = json.loads((out / "predictions.json").read_text())
    records = {r["file"]: r for r in doc["images"]}
    assert sorted(records) == sorted(RELEASE_PHOTOS)
    assert doc["counts"] == {"images": 5, "predicted": 3, "skipped": 2, "in_pickle": 3,
                             "detected": sum(r["detected"] for r in records.values())}
    assert doc["run"]["step"] == 2 and doc["run"]["field_head"] is False
    table = anno_lib.load_annotations(out / "poses.pkl")  # validates every record
    assert sorted(table) == sorted(RELEASE_PHOTOS)
    for key, rec in records.items():
        with Image.open(images / key) as im:
            w, h = im.size
        assert rec["image_hw"] == [h, w] and rec["frame_height"] == (h * 300) // w
        pose = [rec["pose"][k] for k in anno_lib.FLOAT_FIELDS]
        np.testing.assert_allclose([getattr(table[key], k) for k in anno_lib.FLOAT_FIELDS], pose, rtol=1e-12)
        assert table[key].model_id == rec["model_id"] == f"class_{rec['class']}"
        assert 0 <= rec["class"] < tt.NUM_CLASSES
        p = np.asarray(rec["P"], np.float64)
        ref = _projection_f64(pose, h, w)
        np.testing.assert_allclose(p, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
        y0, x0, y1, x1 = rec["box"]
        assert -1e-3 <= y0 <= y1 <= h + 1e-3 and -1e-3 <= x0 <= x1 <= w + 1e-3
        overlay = np.asarray(Image.open(out / rec["outputs"]["overlay"]))
        assert overlay.shape == (h, w, 3)
        assert rec["outputs"]["mask"] is None and rec["outputs"]["field_npy"] is None
    assert not (out / "mask").exists() and not (out / "field").exists()
    assert log.count("no location-field head") == 1


def test_predict_skips_and_reports_corrupt_jpegs(prediction):
    rc, out, images, log = prediction
    doc = json.loads((out / "predictions.json").read_text())
    skipped = {pathlib.Path(s["file"]).name: s["reason"] for s in doc["skipped"]}
    assert sorted(skipped) == ["garbage.jpg", "truncated.jpg"]
    assert all("cannot read the photo" in r for r in skipped.values())
    assert "3 of 5 photos predicted" in log and "2 skipped" in log
    assert "skipped " + str(images / "bad" / "truncated.jpg") in log
    assert not (out / "overlay" / "bad").exists()


def test_predict_empty_folder_and_bad_workdir_give_rc2(tmp_path, workdir, capsys, release_dir):
    (tmp_path / "empty").mkdir()
    rc = predict.main(["--workdir", str(workdir), "--images", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "error: no photos found in" in err and str(tmp_path / "empty") in err
    photo = str(release_dir / RELEASE_PHOTOS["00001.jpg"])
    rc = predict.main(["--workdir", str(tmp_path / "nope"), "--images", photo, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "error: no workdir" in err
    (tmp_path / "half").mkdir()
    shutil.copy(workdir / "config.json", tmp_path / "half" / "config.json")
    rc = predict.main(["--workdir", str(tmp_path / "half"), "--images", photo, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "error: no checkpoint in" in err
    rc = predict.main(["--workdir", str(tmp_path / "empty"), "--images", photo, "--out", str(tmp_path / "o")])
    assert rc == 2 and "has no config.json" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- field outputs (stub row)


def _stub_row(h, w, scale, s=8):
    """A prediction row as Predictor.predict gives it, with the contract's field keys."""
    i, j = np.meshgrid(np.arange(s), np.arange(s), indexing="ij")
    fg = np.where((i >= 2) & (i < 6) & (j >= 1) & (j < 7), 0.93, 0.04).astype(np.float32)
    xyz = np.stack([(j - 3.5) / 10, (i - 3.5) / 10, np.full((s, s), 0.05)], -1).astype(np.float32)
    pose = np.array([0.6, 0.2, 0.0, 2.5, 350.0, 0.0, 0.0], np.float32)
    return {"scale": np.float32(scale), "original_hw": np.array([h, w], np.int32),
            "frame_height": np.float32((h * 300) // w), "top_class": np.int32(1), "top_score": np.float32(0.8),
            "top_valid": np.bool_(True), "top_box": np.array([20, 30, 100, 150], np.float32) * scale,
            "pose": pose, "projection": np.asarray(_projection_f64(pose, h, w), np.float32),
            "boxes": np.zeros((2, 4), np.float32), "scores": np.zeros(2, np.float32),
            "classes": np.zeros(2, np.int32), "valid": np.zeros(2, bool), "field": xyz, "field_fg": fg,
            "pose_appearance": pose, "pose_field": pose}


def test_field_outputs_are_written_in_original_pixels(tmp_path):
    h, w, scale = 120, 200, 0.32
    photo = np.full((h, w, 3), 90, np.uint8)
    row = _stub_row(h, w, scale)
    classes = prediction_writer.ClassInfo(names=["a", "b", "c"])
    rec = prediction_writer.write_prediction(tmp_path, "sub/x.jpg", photo, row, classes)
    box = (20.0, 30.0, 100.0, 150.0)  # top_box / scale
    prob = _paste_reference(row["field_fg"], box, (h, w))
    mask_ref = prob >= 0.5
    mask = np.asarray(Image.open(tmp_path / rec["outputs"]["mask"]))
    assert rec["outputs"]["mask"] == "mask/sub/x.jpg.png" and mask.shape == (h, w)
    tie = np.abs(prob - 0.5) < 1e-5  # float32 vs float64 rounding may go either way there
    assert tie.sum() < 5
    np.testing.assert_array_equal((mask > 0)[~tie], mask_ref[~tie])
    assert set(np.unique(mask)) == {0, 255} and rec["mask_pixels"] == int(mask_ref.sum())
    field = np.load(tmp_path / rec["outputs"]["field_npy"])
    assert field.shape == (h, w, 3) and field.dtype == np.float32
    ref = _paste_reference(row["field"], box, (h, w)) * mask_ref[..., None]
    np.testing.assert_allclose(field[~tie], ref[~tie], atol=1e-6)
    assert np.asarray(Image.open(tmp_path / rec["outputs"]["field_png"])).shape == (h, w, 3)
    assert rec["class_name"] == "b" and rec["box"] == pytest.approx(list(box), abs=1e-4)
    assert rec["pose_field"] == rec["pose_appearance"] == rec["pose"]
    bad = dict(row, pose=np.array([0.1, 0.0, 0.0, np.nan, 300.0, 0.0, 0.0], np.float32))
    rec_bad = prediction_writer.write_prediction(tmp_path, "y.jpg", photo, bad, classes)
    doc = prediction_writer.write_summary(tmp_path, [rec, rec_bad], [{"file": "z.jpg", "reason": "r"}], {"step": 1})
    assert doc["counts"] == {"images": 3, "predicted": 2, "skipped": 1, "detected": 2, "in_pickle": 1}
    assert list(anno_lib.load_annotations(tmp_path / "poses.pkl")) == ["sub/x.jpg"]
    back = json.loads((tmp_path / "predictions.json").read_text())  # strict JSON: NaN written as null
    assert back["images"][1]["pose"]["distance"] is None and back["images"][1]["in_pickle"] is False
    assert "distance" in back["images"][1]["not_in_pickle_reason"]


def test_mesh_overlay_tints_the_projected_silhouette(tmp_path):
    """With the class's mesh known, the overlay tints exactly where the mesh projects (a cube
    seen head-on: a square around the principal point)."""
    from fgpose.mesh import Mesh

    c = np.array([[x, y, z] for x in (-0.2, 0.2) for y in (-0.2, 0.2) for z in (-0.2, 0.2)], np.float32)
    faces = np.array([(0, 1, 3), (0, 3, 2), (4, 6, 7), (4, 7, 5), (0, 4, 5), (0, 5, 1), (2, 3, 7), (2, 7, 6),
                      (0, 2, 6), (0, 6, 4), (1, 5, 7), (1, 7, 3)])
    h, w = 200, 300
    row = _stub_row(h, w, 1.0)
    del row["field"], row["field_fg"]
    row["pose"] = np.array([0.0, 0.0, 0.0, 3.0, 300.0, 0.0, 0.0], np.float32)
    row["top_box"] = np.array([150, 200, 190, 290], np.float32)  # its outline away from the mesh
    photo = np.zeros((h, w, 3), np.uint8)
    classes = prediction_writer.ClassInfo(meshes=[None, Mesh(c, faces), None], model_ids=["m0", "m1", "m2"])
    rec = prediction_writer.write_prediction(tmp_path, "x.png", photo, row, classes)
    overlay = np.asarray(Image.open(tmp_path / rec["outputs"]["overlay"]))
    # front face z = +0.2 at depth 2.8: half side 300 * 0.2 / 2.8 = 21.4 px around (150, 100)
    assert overlay[100, 150].sum() > 0 and overlay[100, 150 + 15].sum() > 0
    assert overlay[100, 150 + 30].sum() == 0 and overlay[100 - 30, 150].sum() == 0
    assert rec["model_id"] == "m1" and rec["outputs"]["mask"] is None


def test_dataset_classes_of_a_release_dataset_name_model_ids_and_present_meshes(tmp_path, release_dir):
    """stanford_cars3d: class i's model id is line i of CAD/StanfordCars3D.txt; only the one real
    ShapeNet car of the shared release has a mesh (unit diagonal, centred), the others None."""
    from fgpose import inference
    from fgpose.config import base_config

    config = base_config()
    config.dataset.data_dir = str(tmp_path)  # nothing prepared there
    ids = [line.strip() for line in (release_dir / "CAD" / "StanfordCars3D.txt").read_text().splitlines()
           if line.strip()]
    info = inference.dataset_classes(config, 196)
    assert list(info.model_ids) == ids
    car = anno_lib.EXAMPLE_CAR_MODEL_ID
    have = [i for i in range(196) if info.mesh(i) is not None]
    assert have == [i for i, m in enumerate(ids) if m == car] and have
    v = np.asarray(info.mesh(have[0]).vertices, np.float64)
    lo, hi = v.min(0), v.max(0)
    assert np.linalg.norm(hi - lo) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose((lo + hi) / 2, 0, atol=1e-5)
    assert info.model_id(have[0]) == car


def test_prediction_modules_sit_above_the_library():
    """fgpose.predict is imported by nothing; its helpers only by predict/inference; roi_paste and
    photos import no fgpose module (any module may use them)."""
    root = HERE.parent
    files = {".".join(p.relative_to(root).with_suffix("").parts): tt._imports(p) for p in (root / "fgpose").rglob("*.py")}
    users = {m: [f for f, imps in files.items() if f != m and any(i == m or i.startswith(m + ".") for i in imps)]
             for m in ("fgpose.predict", "fgpose.inference", "fgpose.prediction_writer")}
    assert users["fgpose.predict"] == []
    assert users["fgpose.inference"] == ["fgpose.predict"]
    assert sorted(users["fgpose.prediction_writer"]) == ["fgpose.inference", "fgpose.predict"]
    for leaf in ("fgpose.roi_paste", "fgpose.photos"):
        assert not any(i.startswith("fgpose") for i in files[leaf]), leaf
