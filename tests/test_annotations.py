"""Tests of fgpose.annotations: safe loading, validation, saving and the release layout."""

from __future__ import annotations

import dataclasses
import os
import pickle
import pickletools
import posix

import jax.numpy as jnp
import numpy as np
import pytest

from fgpose import annotations as A
from fgpose import camera
from tests.hardening_inputs import GOOD  # cars_train/00001.jpg's v1 record

# (dataset, split, number of annotated images) in the release.
EXPECTED_COUNTS = [
    ("StanfordCars", "train", 8144),
    ("StanfordCars", "test", 8041),
    ("CompCars", "train", 3798),
    ("CompCars", "test", 1898),
    ("FGVC_Aircraft", "train", 6667),
    ("FGVC_Aircraft", "test", 3333),
]
FILES = [
    (name, split, version, n)
    for name, split, n in EXPECTED_COUNTS
    for version in ((1,) if name == "CompCars" else (1, 2))
]



@pytest.fixture(scope="module")
def loaded(release_split):
    """Every annotation file of the release, loaded once: {(dataset, split, version): dict}."""
    return {(name, split, version): release_split(name, split, version) for name, split, version, _ in FILES}


# ----------------------------------------------------------------------------- the release


@pytest.mark.parametrize("name,split,version,count", FILES)
def test_counts(loaded, name, split, version, count):
    annos = loaded[(name, split, version)]
    assert len(annos) == count
    assert all(isinstance(a, A.Annotation) and a.key == k for k, a in annos.items())
    assert count == getattr(A.DATASETS[name], f"num_{split}")


@pytest.mark.parametrize("name,split", [(n, s) for n, s, _ in EXPECTED_COUNTS if n != "CompCars"])
def test_v2_has_the_same_images_and_models_as_v1(loaded, name, split):
    v1, v2 = loaded[(name, split, 1)], loaded[(name, split, 2)]
    assert set(v1) == set(v2)
    assert all(v1[k].model_id == v2[k].model_id for k in v1)


def test_total_number_of_images(loaded):
    images = {(name, split, key) for (name, split, _), annos in loaded.items() for key in annos}
    assert len(images) == 31881
    assert sum(len(a) for a in loaded.values()) == 31881 + 8144 + 8041 + 6667 + 3333


def test_known_record(loaded, release_dir):
    v1 = loaded[("StanfordCars", "train", 1)]["00001.jpg"]
    assert v1 == A.Annotation(key="00001.jpg", **GOOD)
    v2 = loaded[("StanfordCars", "train", 2)]["00001.jpg"]
    assert v2.model_id == GOOD["model_id"]
    assert (v2.azimuth, v2.elevation) == (v1.azimuth, v1.elevation)
    assert v2.theta == pytest.approx(0.031415926535897934, abs=1e-15)
    assert v2.distance == pytest.approx(1.03, abs=1e-12)
    assert (v2.f, v2.u, v2.v) == (v1.f, -23.0, 11.0)
    # Same key in the other split is a different photo (cars_test/00001.jpg).
    assert "00001.jpg" in loaded[("StanfordCars", "test", 1)]
    assert A.image_path(release_dir, "StanfordCars", "train", "00001.jpg").is_file()
    assert A.cad_path(release_dir, "StanfordCars", v1.model_id).is_file()


def test_shipped_images_exist(loaded, release_dir):
    for name, key in [
        ("StanfordCars", "00001.jpg"),
        ("FGVC_Aircraft", "0034309.jpg"),
        ("CompCars", "100/213/2010/27bb6c344896a5.jpg"),
    ]:
        splits = [s for s in A.SPLITS if key in loaded[(name, s, 1)]]
        assert splits, (name, key)
        assert A.image_path(release_dir, name, splits[0], key).is_file()


def test_example_car_is_the_shipped_mesh(loaded, release_dir):
    """The shared data's README: the release ships one ShapeNet car, the CAD model of
    ``cars_train/00001.jpg`` and of 85 StanfordCars annotations (43 train, 42 test)."""
    assert [p.name for p in (release_dir / "CAD" / "02958343").iterdir()] == [A.EXAMPLE_CAR_MODEL_ID]
    assert A.cad_path(release_dir, "StanfordCars", A.EXAMPLE_CAR_MODEL_ID).is_file()
    for version in (1, 2):
        train, test = (loaded[("StanfordCars", split, version)] for split in A.SPLITS)
        assert train["00001.jpg"].model_id == A.EXAMPLE_CAR_MODEL_ID
        uses = [sum(a.model_id == A.EXAMPLE_CAR_MODEL_ID for a in t.values()) for t in (train, test)]
        assert uses == [43, 42]


def test_class_model_lists(loaded, release_dir):
    for name, n in [("StanfordCars", 196), ("CompCars", 113), ("FGVC_Aircraft", 100)]:
        models = A.load_class_models(release_dir, name)
        assert len(models) == n == A.DATASETS[name].num_classes
        assert all(m == m.strip() and m for m in models)
        used = {a.model_id for (d, _, _), annos in loaded.items() if d == name for a in annos.values()}
        assert used == set(models)


def test_poses_from_release(loaded):
    annos = loaded[("FGVC_Aircraft", "test", 2)]
    pose = A.poses_from_annotations(list(annos.values()))
    assert isinstance(pose.azimuth, np.ndarray)
    for field in camera.POSE_FIELDS:
        leaf = getattr(pose, field)
        assert leaf.shape == (3333,) and leaf.dtype == np.float64
        np.testing.assert_array_equal(leaf, [getattr(a, field) for a in annos.values()])
    assert camera.rotation_matrix(pose.azimuth, pose.elevation, pose.theta).shape == (3333, 3, 3)


def test_save_load_round_trip_release(loaded, tmp_path):
    annos = loaded[("StanfordCars", "train", 2)]
    out = tmp_path / "train_anno_v2.pkl"
    A.save_annotations(out, annos)
    back = A.load_annotations(out)
    assert back == annos
    assert list(back) == list(annos)


# ----------------------------------------------------------------------------- layout


def test_annotation_paths(tmp_path):
    root = tmp_path
    assert A.annotation_path(root, "StanfordCars", "train", 1) == root / "Anno3D/StanfordCars/train_anno.pkl"
    assert A.annotation_path(root, "FGVC_Aircraft", "test", 2) == root / "Anno3D/FGVC_Aircraft/test_anno_v2.pkl"
    assert A.annotation_path(root, "FGVC_Aircraft", "test", "v2") == A.annotation_path(root, "FGVC_Aircraft", "test", 2)
    assert A.annotation_path(root, "CompCars", "test", "v1") == root / "Anno3D/CompCars/test_anno.pkl"
    with pytest.raises(ValueError, match=r"CompCars has no annotation version 2.*v1"):
        A.annotation_path(root, "CompCars", "train", 2)
    with pytest.raises(ValueError, match="unknown dataset 'Cars'"):
        A.annotation_path(root, "Cars", "train", 1)
    with pytest.raises(ValueError, match="unknown split 'val'"):
        A.annotation_path(root, "StanfordCars", "val", 1)
    for bad in (3, 0, "v3", True, 1.0):
        with pytest.raises(ValueError, match="no annotation version"):
            A.annotation_path(root, "StanfordCars", "train", bad)


def test_image_and_cad_paths(tmp_path):
    root = tmp_path
    assert A.image_path(root, "StanfordCars", "train", "00001.jpg") == root / "Image/StanfordCars/cars_train/00001.jpg"
    assert A.image_path(root, "StanfordCars", "test", "00001.jpg") == root / "Image/StanfordCars/cars_test/00001.jpg"
    for split in A.SPLITS:
        assert A.image_path(root, "FGVC_Aircraft", split, "0034309.jpg") == root / "Image/FGVC_Aircraft/0034309.jpg"
        assert (
            A.image_path(root, "CompCars", split, "100/213/2010/27bb6c344896a5.jpg")
            == root / "Image/CompCars/image/100/213/2010/27bb6c344896a5.jpg"
        )
    for bad in ("../../etc/passwd", "/etc/passwd", "a/../../b.jpg", "", "a\\b.jpg", "./x.jpg"):
        with pytest.raises(ValueError, match="image key"):
            A.image_path(root, "CompCars", "train", bad)
    with pytest.raises(ValueError, match="unknown split"):
        A.image_path(root, "CompCars", "val", "x.jpg")
    assert A.cad_path(root, "StanfordCars", "abc123") == root / "CAD/02958343/abc123/model.obj"
    assert A.cad_path(root, "CompCars", "abc123") == root / "CAD/02958343/abc123/model.obj"
    assert A.cad_path(root, "FGVC_Aircraft", "abc123") == root / "CAD/02691156/abc123/model.obj"
    for bad in ("../x", "a/b", "", None):
        with pytest.raises(ValueError, match="model id"):
            A.cad_path(root, "FGVC_Aircraft", bad)
    assert {d.name: d.synset for d in A.DATASETS.values()} == {
        "StanfordCars": "02958343",
        "CompCars": "02958343",
        "FGVC_Aircraft": "02691156",
    }
    assert {d.name: d.versions for d in A.DATASETS.values()} == {
        "StanfordCars": (1, 2),
        "CompCars": (1,),
        "FGVC_Aircraft": (1, 2),
    }


def test_load_class_models_format(tmp_path):
    (tmp_path / "CAD").mkdir()
    path = tmp_path / "CAD" / "FGVC_Aircraft3D.txt"
    path.write_text("aaa111\nbbb222\t\nccc333\n\n")
    assert A.load_class_models(tmp_path, "FGVC_Aircraft") == ["aaa111", "bbb222", "ccc333"]
    path.write_text("aaa111\n\nccc333\n")
    with pytest.raises(ValueError, match=r"FGVC_Aircraft3D.txt:2"):
        A.load_class_models(tmp_path, "FGVC_Aircraft")


def test_release_dir_env(monkeypatch, tmp_path):
    monkeypatch.delenv(A.RELEASE_DIR_ENV, raising=False)
    assert A.release_dir() is None
    monkeypatch.setenv(A.RELEASE_DIR_ENV, "")
    assert A.release_dir() is None
    monkeypatch.setenv(A.RELEASE_DIR_ENV, str(tmp_path))
    assert A.release_dir() == tmp_path


# ----------------------------------------------------------------------------- validation


def _write(path, obj, protocol=0):
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=protocol)
    return path


def test_good_small_file_both_protocols(tmp_path):
    data = {"b.jpg": dict(GOOD), "a.jpg": dict(GOOD, u=3, azimuth=7.0)}  # int u is accepted
    for protocol in (0, 2):
        path = _write(tmp_path / f"p{protocol}.pkl", data, protocol)
        annos = A.load_annotations(path)
        assert list(annos) == ["b.jpg", "a.jpg"]
        assert annos["a.jpg"].u == 3.0 and type(annos["a.jpg"].u) is float
        assert annos["a.jpg"].azimuth == 7.0  # not wrapped


@pytest.mark.parametrize(
    "field,value,problem",
    [
        ("f", None, "missing field"),
        ("model_id", None, "missing field"),
        ("azimuth", "1.0", "expected a float, got str"),
        ("distance", [1.0], "expected a float, got list"),
        ("u", True, "expected a float, got bool"),
        ("model_id", 12345, "expected a str, got int"),
        ("model_id", "", "not a valid model id"),
        ("elevation", float("nan"), "finite"),
        ("v", float("inf"), "finite"),
        ("theta", -float("inf"), "finite"),
        ("distance", 0.0, "must be positive"),
        ("distance", -1.0, "must be positive"),
        ("f", 0.0, "must be positive"),
        ("f", -346.0, "must be positive"),
        ("colour", "red", "unexpected field"),
    ],
)
def test_malformed_entry_names_file_key_and_field(tmp_path, field, value, problem):
    record = dict(GOOD)
    if problem == "missing field":
        del record[field]
    else:
        record[field] = value
    path = _write(tmp_path / "bad_anno.pkl", {"00001.jpg": dict(GOOD), "04860.jpg": record})
    with pytest.raises(A.AnnotationError) as info:
        A.load_annotations(path)
    msg = str(info.value)
    assert str(path) in msg and "'04860.jpg'" in msg and f"'{field}'" in msg and problem in msg
    assert (info.value.source, info.value.key, info.value.field) == (path, "04860.jpg", field)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "obj,problem",
    [
        ([dict(GOOD)], "expected a dict {image_key: {field: value}} at top level, got list"),
        ("hello", "at top level, got str"),
        ({"00001.jpg": [1, 2]}, "'00001.jpg': expected a dict of fields"),
        ({"00001.jpg": 3.0}, "'00001.jpg': expected a dict of fields"),
        ({7: dict(GOOD)}, "image key 7: image keys must be non-empty str"),
    ],
)
def test_malformed_structure(tmp_path, obj, problem):
    path = _write(tmp_path / "bad.pkl", obj)
    with pytest.raises(A.AnnotationError) as info:
        A.load_annotations(path)
    assert str(path) in str(info.value) and problem in str(info.value)


def test_broken_pickle(tmp_path):
    path = tmp_path / "truncated.pkl"
    path.write_bytes(pickle.dumps({"00001.jpg": GOOD}, protocol=0)[:50])
    with pytest.raises(A.AnnotationError, match="not a valid annotation pickle") as info:
        A.load_annotations(path)
    assert str(path) in str(info.value)
    path.write_bytes(b"")
    with pytest.raises(A.AnnotationError, match="truncated.pkl"):
        A.load_annotations(path)


def test_annotation_constructor_validates():
    with pytest.raises(A.AnnotationError, match=r"image key 'k': field 'f': must be positive"):
        A.Annotation(key="k", **dict(GOOD, f=-1.0))
    with pytest.raises(A.AnnotationError, match=r"field 'azimuth'.*expected a float"):
        A.Annotation(key="k", **dict(GOOD, azimuth="north"))
    a = A.Annotation(key="k", **dict(GOOD, azimuth=np.float32(0.5)))
    assert type(a.azimuth) is float
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.azimuth = 1.0  # type: ignore[misc]


# ----------------------------------------------------------------------------- unsafe pickles


class _Payload:
    """Pickles as a call of os.system (the classic pickle exploit)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    command = f"touch {marker}"
    blobs = {
        # Hand-written protocol 0 ("c" = GLOBAL os.system, "R" = REDUCE) inside a dict.
        "handwritten": b"(dp0\nS'00001.jpg'\np1\ncos\nsystem\np2\n(S'" + command.encode() + b"'\np3\ntp4\nRp5\ns.",
    }
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        blobs[f"protocol{protocol}"] = pickle.dumps({"00001.jpg": _Payload(command)}, protocol=protocol)

    # Replace os.system/posix.system by a recorder, so even a failing test runs no shell.
    calls = []
    monkeypatch.setattr(os, "system", lambda cmd: calls.append(cmd) or 0)
    monkeypatch.setattr(posix, "system", lambda cmd: calls.append(cmd) or 0)

    # The payload is live: a plain unpickler calls (the recorded) os.system.
    pickle.loads(blobs["protocol2"])
    assert calls == [command]
    calls.clear()

    for name, blob in blobs.items():
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(blob)
        with pytest.raises(A.AnnotationError) as info:
            A.load_annotations(path)
        msg = str(info.value)
        assert str(path) in msg and "refusing to unpickle the global" in msg
        assert "os.system" in msg or "posix.system" in msg, msg
        assert calls == [] and not marker.exists(), name


@pytest.mark.parametrize(
    "obj,name",
    [
        ({"k": np.float64(1.0)}, "numpy"),
        ({"k": {1, 2}}, ".set"),  # protocol 2 names it __builtin__.set
        ({"k": __import__("collections").OrderedDict()}, "collections.OrderedDict"),
    ],
)
def test_any_global_is_refused(tmp_path, obj, name):
    path = _write(tmp_path / "g.pkl", obj, protocol=2)
    with pytest.raises(A.AnnotationError, match="refusing to unpickle the global") as info:
        A.load_annotations(path)
    assert name in str(info.value)


def test_persistent_id_is_refused(tmp_path):
    path = tmp_path / "pid.pkl"
    path.write_bytes(b"Pfoo\n.")  # PERSID opcode
    with pytest.raises(A.AnnotationError, match="persistent id"):
        A.safe_load_pickle(path)


# ----------------------------------------------------------------------------- saving


def test_save_format_and_round_trip(tmp_path):
    annos = [
        A.Annotation(key="x/y/1.jpg", **GOOD),
        A.Annotation(key="0.jpg", **dict(GOOD, azimuth=-1.0, u=5, model_id="abc")),
    ]
    path = tmp_path / "out.pkl"
    A.save_annotations(path, annos)
    blob = path.read_bytes()
    assert blob[:2] == b"\x80\x02"  # protocol 2
    ops = {op.name for op, _, _ in pickletools.genops(blob)}
    assert not ops & {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ"}
    raw = pickle.loads(blob)
    assert list(raw) == ["x/y/1.jpg", "0.jpg"]
    assert raw["0.jpg"] == dict(GOOD, azimuth=-1.0, u=5.0, model_id="abc")
    assert all(type(v) is float for r in raw.values() for k, v in r.items() if k != "model_id")
    back = A.load_annotations(path)
    assert list(back.values()) == annos
    # A mapping works too and must be consistent with the records' keys.
    A.save_annotations(path, {a.key: a for a in annos})
    assert list(A.load_annotations(path).values()) == annos
    with pytest.raises(ValueError, match="differs"):
        A.save_annotations(path, {"other.jpg": annos[0]})
    with pytest.raises(ValueError, match="duplicate"):
        A.save_annotations(path, [annos[0], annos[0]])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.pkl"]  # no temp files left


def test_pose_conversions():
    a = A.Annotation(key="k", **GOOD)
    pose = a.pose()
    assert isinstance(pose, camera.Pose) and pose.azimuth.dtype == jnp.float32 and pose.shape == ()
    np.testing.assert_allclose(np.asarray(pose.as_array()), [GOOD[k] for k in camera.POSE_FIELDS], rtol=1e-6)
    b = A.Annotation(key="j", **dict(GOOD, f=100.0))
    batch = A.poses_from_annotations([a, b])
    assert batch.f.dtype == np.float64 and batch.f.shape == (2,)
    np.testing.assert_array_equal(batch.f, [GOOD["f"], 100.0])
    batch32 = A.poses_from_annotations({"k": a, "j": b}, dtype=np.float32)
    assert batch32.u.dtype == np.float32 and batch32.u.shape == (2,)
    empty = A.poses_from_annotations([])
    assert empty.azimuth.shape == (0,)
    assert camera.projection_matrix(batch, 200).shape == (2, 3, 4)
