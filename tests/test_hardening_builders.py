"""Issue 14, items 2, 4 and 10 (builder side): bad records (distance 1e-300, 10**400, a value
nested 200,000 deep) are skipped as ``malformed_annotation`` and counted while the good ones
are built; a malicious or broken pickle stops `python -m tfds_builders.build` with one
``error:`` line, rc 2, and leaves no directory behind."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from fgpose import annotations as anno_lib
from fgpose import mesh as mesh_lib
from tests.hardening_inputs import BOX, GOOD, malicious_pickle, nested_value_pickle, records_pickle
from tfds_builders import base, build
import tfds_builders.stanford_cars3d  # noqa: F401 - registers the builder

MODEL = "boxmodel"
POSE = dict(GOOD, model_id=MODEL, azimuth=0.0, elevation=0.0, theta=0.0, distance=2.0, f=300.0, u=0.0, v=0.0)
BAD = {
    "tiny_distance.jpg": dict(POSE, distance=1e-300),  # 0 in float32: a full-frame box before
    "huge_int.jpg": dict(POSE, distance=10**400),  # OverflowError before
    "huge_focal.jpg": dict(POSE, f=1e300),
    "huge_u.jpg": dict(POSE, u=1e40),
}


@pytest.fixture
def manual(tmp_path, monkeypatch):
    """A tiny StanfordCars manual dir: a box mesh, one photo per key, train_anno_v2.pkl with
    one good record and the bad ones, and a second pickle holding a nested record."""
    monkeypatch.setenv(mesh_lib.CACHE_DIR_ENV, str(tmp_path / "mesh_cache"))
    root = tmp_path / "manual"
    cad = anno_lib.cad_path(root, "StanfordCars", MODEL)
    cad.parent.mkdir(parents=True)
    cad.write_text(BOX)
    keys = ["good.jpg", *BAD, "nested.jpg"]
    for key in keys:
        photo = anno_lib.image_path(root, "StanfordCars", "train", key)
        photo.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((200, 300, 3), 100, np.uint8)).save(photo)
    path = anno_lib.annotation_path(root, "StanfordCars", "train", 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(records_pickle({"good.jpg": POSE, **BAD}))
    nested = tmp_path / "nested.pkl"
    nested.write_bytes(nested_value_pickle("nested.jpg", "distance"))
    return root, path, nested


def test_bad_records_are_skipped_as_malformed(manual, tmp_path, caplog):
    root, path, nested = manual
    cfg = base.Pose3DConfig(name="hardening", annotation_version=2, field_max_side=64, max_faces=None)
    builder = tfds.builder("stanford_cars3d", data_dir=tmp_path / "data", config=cfg)
    records = builder._read_records(path) + builder._read_records(nested)  # the builder's own reader
    labels = base.Labels(names=None, lookup=lambda split, key, ann: 5)
    with caplog.at_level(logging.WARNING, logger="tfds_builders"):
        examples = list(builder._generate_examples(root=root, split="train", source=path, records=records,
                                                   labels=labels))
    assert [key for key, _ in examples] == ["good.jpg"]
    example = examples[0][1]
    np.testing.assert_array_equal(example["pose"], np.float32([0, 0, 0, 2, 300, 0, 0]))
    # The box (+-0.3 x +-0.15 face at depth 1.8, f = 300) spans 100 x 50 pixels of the 300 x 200
    # photo; the box is measured on the 64 x 43 field, one field pixel is 300 / 64 photo pixels.
    np.testing.assert_allclose(example["box"], [75, 100, 125, 200], atol=300 / 64)
    report = builder.skipped
    assert report["splits"]["train"] == {"generated": 1, "skipped": {"malformed_annotation": 5}}
    assert report["keys"]["train"]["malformed_annotation"] == [*BAD, "nested.jpg"]
    assert "skipping train example 'tiny_distance.jpg' (malformed_annotation)" in caplog.text
    assert "field 'distance': out of the valid range [0.0001, 1e+06]" in caplog.text
    assert "field 'distance': expected a float, got int <int of about 401 digits> (too large for a float)" in caplog.text
    assert "field 'distance': expected a float, got list [[[[...]]]]" in caplog.text


def test_skip_log_records_any_key():
    nested = ()
    for _ in range(200_000):
        nested = (nested,)
    log = base.SkipLog()
    log.skip("train", "malformed_annotation", nested, ValueError("bad"))
    log.skip("train", "malformed_annotation", 10**400, "bad")
    log.skip("train", "malformed_annotation", "k" * 10_000, "bad")
    keys = log.summary()["keys"]["train"]["malformed_annotation"]
    assert keys[:2] == ["((((...),),),)", "<int of about 401 digits>"]
    assert keys[2].startswith("'kkkk") and "..." in keys[2] and len(keys[2]) < 130
    json.dumps(log.summary())


def _build(capsys, *args):
    rc = build.main(["stanford_cars3d", "--config", "v2", *map(str, args)])
    return rc, capsys.readouterr()


def test_malicious_pickle_stops_the_build_cleanly(tmp_path, capsys):
    marker = tmp_path / "pwned"
    root = tmp_path / "manual"
    for split in ("train", "test"):
        path = anno_lib.annotation_path(root, "StanfordCars", split, 2)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(malicious_pickle(f"touch {marker}"))
    data = tmp_path / "data"
    rc, out = _build(capsys, "--manual_dir", root, "--data_dir", data)
    train = anno_lib.annotation_path(root, "StanfordCars", "train", 2)
    assert rc == 2
    assert out.err == (f"error: {train}: refusing to unpickle the global os.system: annotation files may only "
                       "contain dicts, strings and numbers (the file is not a release annotation file, or it has "
                       "been tampered with)\n")
    assert not data.exists() and not marker.exists()
    # A data dir that exists and holds other datasets keeps exactly what it had.
    (data / "other_dataset" / "1.0.0").mkdir(parents=True)
    (data / "downloads").mkdir()
    rc, out = _build(capsys, "--manual_dir", root, "--data_dir", data)
    assert rc == 2 and out.err.count("\n") == 1
    assert sorted(p.relative_to(data).as_posix() for p in data.rglob("*")) == [
        "downloads", "other_dataset", "other_dataset/1.0.0"]


def test_broken_pickle_and_missing_labels_stop_the_build_cleanly(manual, tmp_path, capsys):
    root, path, _ = manual
    test_path = anno_lib.annotation_path(root, "StanfordCars", "test", 2)
    test_path.write_bytes(b"\x80\x02}q\x00(X")  # truncated
    data = tmp_path / "data"
    rc, out = _build(capsys, "--manual_dir", root, "--data_dir", data)
    assert rc == 2 and out.err.startswith(f"error: {test_path}: not a valid annotation pickle (")
    assert out.err.count("\n") == 1 and not data.exists()
    test_path.write_bytes(records_pickle({"good.jpg": POSE}))  # now readable; the devkit is missing
    rc, out = _build(capsys, "--manual_dir", root, "--data_dir", data)
    assert rc == 2 and out.err.startswith("error: stanford_cars3d: ") and "cars_meta.mat" in out.err
    assert out.err.count("\n") == 1 and not data.exists()
