"""TFDS builders and their shared geometry against independent float64 NumPy references.

Real-data tests build a tiny manual directory in ``tmp_path`` from the release
(``FGPOSE_RELEASE_DIR``): reduced annotation pickles holding only keys of the one available
car mesh, that mesh, the real photo ``cars_train/00001.jpg``, placeholder photos for the
other keys, a fake Stanford Cars devkit (``scipy.io.savemat``), and planted bad inputs (a
missing mesh, a corrupt photo, a missing photo, a malformed record, an unlabelled image) that
must be skipped and counted.
"""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
from PIL import Image

tfds = pytest.importorskip("tensorflow_datasets")

import tfds_builders  # noqa: E402,F401  (registers the builders)
from fgpose import annotations as anno_lib  # noqa: E402
from fgpose import mesh as mesh_lib  # noqa: E402
from fgpose.buckets import canvas_side, count_bucket  # noqa: E402
from fgpose.record_geometry import field_size, record_geometry  # noqa: E402
from tests.reference import camera as ref_camera  # noqa: E402
from tests.reference import project as project64  # noqa: E402
from tfds_builders import base  # noqa: E402

CAR_ID = anno_lib.EXAMPLE_CAR_MODEL_ID
MAX_FACES = 4000  # quadric decimation below ~4k faces visibly distorts the car (1.5k: 14 px box error)
FIELD_MAX_SIDE = 256
PLACEHOLDER_HW = (480, 640)


# ----------------------------------------------------------------------------- references


def check_field(ex_mask, location, pose, image_hw, vertices, tol_px=0.75, shrink_px=1.0):
    """Location-field reprojection and mask box vs the projected vertices' box (field px).

    The mask's box lies inside the vertices' box grown by 1 px (pixel-centre sampling) and
    covers it shrunk by ``shrink_px`` (thin parts such as wing tips can fall between pixel
    centres, so the mask may stop short of the continuous silhouette there)."""
    m = np.asarray(ex_mask).reshape(ex_mask.shape[:2]).astype(bool)
    fh, fw = m.shape
    _, _, p = ref_camera(pose, image_hw, (fh, fw))
    loc = np.asarray(location, np.float64)
    assert loc.shape == (fh, fw, 3)
    assert np.all(loc[~m] == 0), "location field must be 0 off the mask"
    ii, jj = np.nonzero(m)
    xy, depth = project64(p, loc[ii, jj])
    assert np.all(depth > 0)
    err = np.hypot(xy[:, 0] - (jj + 0.5), xy[:, 1] - (ii + 0.5))
    assert err.max() < tol_px, f"location field reprojects {err.max():.3f} px from its pixel"
    vxy, _ = project64(p, vertices)
    # The silhouette's extent is the projected vertices' extent, up to pixel-centre sampling.
    box = np.array([ii.min(), jj.min(), ii.max() + 1, jj.max() + 1], np.float64)
    ref = np.array([vxy[:, 1].min(), vxy[:, 0].min(), vxy[:, 1].max(), vxy[:, 0].max()])
    ref = np.clip(ref, 0, [fh, fw, fh, fw])
    grow = np.array([-1.0, -1.0, 1.0, 1.0])
    assert np.all(box * [-1, -1, 1, 1] <= (ref + grow) * [-1, -1, 1, 1]), (box, ref)
    assert np.all(box * [-1, -1, 1, 1] >= (ref - shrink_px * grow) * [-1, -1, 1, 1]), (box, ref)
    return box


# ----------------------------------------------------------------------------- geometry


def _box_mesh():
    """A closed axis-aligned box (12 triangles), extents (0.8, 0.3, 0.4)."""
    hx, hy, hz = 0.4, 0.15, 0.2
    v = np.array([[x, y, z] for x in (-hx, hx) for y in (-hy, hy) for z in (-hz, hz)], np.float32)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    f = np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))], np.int32)
    return v, f


def test_field_size_and_buckets():
    assert field_size((400, 600)) == (400, 600)
    assert field_size((400, 600), 640) == (400, 600)
    assert field_size((400, 600), 300) == (200, 300)
    assert field_size((1000, 333), 500) == (500, round(333 * 0.5))
    assert [canvas_side(s) for s in (10, 300, 427, 480, 640, 1000)] == [32, 320, 448, 512, 640, 1024]
    assert [count_bucket(n) for n in (1, 1025, 1536, 1537, 20000)] == [1024, 1536, 1536, 2048, 24576]


def test_class_counts_come_from_the_release_layout():
    from tfds_builders.compcars3d.compcars3d_dataset_builder import Builder as CompCars
    from tfds_builders.fgvc_aircraft3d.fgvc_aircraft3d_dataset_builder import Builder as Aircraft
    from tfds_builders.stanford_cars3d.stanford_cars3d_dataset_builder import Builder as Stanford

    # Table 1 of Wang et al. 2018 (and the lines of the release's CAD/<Dataset>3D.txt).
    assert (Stanford.NUM_CLASSES, CompCars.NUM_CLASSES, Aircraft.NUM_CLASSES) == (196, 113, 100)
    for builder in (Stanford, CompCars, Aircraft):
        assert builder.NUM_CLASSES == anno_lib.DATASETS[builder.DATASET].num_classes
    assert len(CompCars.CLASS_NAMES) == 113
    with pytest.raises(TypeError, match="2 CLASS_NAMES, but CompCars has 113 classes"):
        class _Bad(base.ReleaseBuilder, skip_registration=True):
            DATASET = "CompCars"
            CLASS_NAMES = ("1", "2")


@pytest.mark.parametrize("image_hw,field_max_side", [((400, 600), None), ((700, 500), 128)])
def test_record_geometry_box_mesh(image_hw, field_max_side):
    v, f = _box_mesh()
    pose = np.array([0.7, 0.3, 0.1, 1.6, 400.0, 5.0, -8.0])
    g = record_geometry(v, f, pose, image_hw, field_max_side)
    r, k, p = ref_camera(pose, image_hw)
    np.testing.assert_allclose(g["rotation"], r, atol=2e-6)
    np.testing.assert_allclose(g["intrinsics"], k, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(g["projection"], p, rtol=2e-6, atol=2e-3)
    fh, fw = field_size(image_hw, field_max_side)
    assert g["mask"].shape == (fh, fw, 1) and g["mask"].dtype == np.uint8
    assert set(np.unique(g["mask"])) <= {0, 1}
    assert g["location_field"].shape == (fh, fw, 3) and g["location_field"].dtype == np.float16
    box_f = check_field(g["mask"], g["location_field"], pose, image_hw, v)
    scale = np.array([image_hw[0] / fh, image_hw[1] / fw] * 2)
    np.testing.assert_allclose(g["box"], box_f * scale, rtol=1e-6)
    # Off-screen object: empty mask, zero box.
    away = pose.copy()
    away[5] = 5000.0
    g2 = record_geometry(v, f, away, image_hw, field_max_side)
    assert not g2["mask"].any() and not g2["box"].any()


# ----------------------------------------------------------------------------- manual dir


def _write_raw(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(records, fh, protocol=2)


def _in_frame(ann, hw, vertices):
    _, _, p = ref_camera([getattr(ann, k) for k in anno_lib.FLOAT_FIELDS], hw)
    xy, depth = project64(p, vertices)
    return depth.min() > 0 and xy.min() > 2 and xy[:, 0].max() < hw[1] - 2 and xy[:, 1].max() < hw[0] - 2


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory):
    old = os.environ.get(mesh_lib.CACHE_DIR_ENV)
    os.environ[mesh_lib.CACHE_DIR_ENV] = str(tmp_path_factory.mktemp("mesh_cache"))
    yield
    if old is None:
        os.environ.pop(mesh_lib.CACHE_DIR_ENV, None)
    else:
        os.environ[mesh_lib.CACHE_DIR_ENV] = old


@pytest.fixture(scope="module")
def car_vertices(example_car_mesh):
    """Full-resolution vertices of the release's car mesh."""
    return example_car_mesh.vertices  # conftest: load_mesh(cad_path(...), cache_dir=False)


@pytest.fixture(scope="module")
def stanford_manual(release_dir, release_split, tmp_path_factory, cache_env, car_vertices):
    """A reduced StanfordCars manual dir; returns (root, planted, keys, mesh vertices)."""
    root = tmp_path_factory.mktemp("manual")
    verts = car_vertices
    cad = anno_lib.cad_path(root, "StanfordCars", CAR_ID)
    cad.parent.mkdir(parents=True)
    os.symlink(anno_lib.cad_path(release_dir, "StanfordCars", CAR_ID), cad)
    keys, planted = {}, {"train": {}, "test": {}}
    for split in ("train", "test"):
        table = release_split("StanfordCars", split, 2)
        good = [k for k, a in table.items() if a.model_id == CAR_ID and k != "00001.jpg"
                and _in_frame(a, PLACEHOLDER_HW, verts)]
        other = [k for k, a in table.items() if a.model_id != CAR_ID]
        chosen = (["00001.jpg"] + good[:1]) if split == "train" else good[:2]
        records = {k: table[k].to_record() for k in chosen}
        img_dir = root / "Image" / "StanfordCars" / f"cars_{split}"
        img_dir.mkdir(parents=True)
        labelled = list(chosen)
        # A key whose CAD model is not in the manual dir.
        records[other[0]] = table[other[0]].to_record()
        labelled.append(other[0])
        planted[split]["missing_mesh"] = 1
        if split == "train":
            bad = good[1:5]
            records[bad[0]] = table[bad[0]].to_record()  # corrupt photo
            records[bad[1]] = table[bad[1]].to_record()  # missing photo
            rec = table[bad[2]].to_record()
            rec["f"] = -3.0  # malformed: f must be positive
            records[bad[2]] = rec
            records[bad[3]] = table[bad[3]].to_record()  # no devkit label
            labelled += bad[:3]
            planted["train"].update(corrupt_photo=1, missing_photo=1, malformed_annotation=1, no_label=1)
            (img_dir / bad[0]).write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
            Image.fromarray(np.full(PLACEHOLDER_HW + (3,), 90, np.uint8)).save(img_dir / bad[3])
            keys["bad_photo"] = bad[0]
        for k in chosen + [other[0]]:
            if (split, k) == ("train", "00001.jpg"):
                os.symlink(release_dir / "Image" / "StanfordCars" / "cars_train" / k, img_dir / k)
            else:
                rng = np.random.default_rng(len(k) + ord(k[0]))
                Image.fromarray(rng.integers(0, 255, PLACEHOLDER_HW + (3,), dtype=np.uint8)).save(img_dir / k)
        _write_raw(anno_lib.annotation_path(root, "StanfordCars", split, 2), records)
        keys[split] = chosen
        keys[f"{split}_labelled"] = labelled
    devkit = root / "Image" / "StanfordCars" / "devkit"
    devkit.mkdir(parents=True)
    names = np.array([f"Make Model {i:03d}" for i in range(196)], dtype=object)
    scipy.io.savemat(devkit / "cars_meta.mat", {"class_names": names.reshape(1, -1)})
    for split, fname in (("train", "cars_train_annos.mat"), ("test", "cars_test_annos_withlabels.mat")):
        lab = keys[f"{split}_labelled"]
        dt = [(n, "O") for n in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")]
        rec = np.zeros((1, len(lab)), dtype=dt)
        for i, k in enumerate(lab):
            rec[0, i] = (1, 1, 10, 10, np.uint8(1 + (7 * i + 3) % 196), k)
        scipy.io.savemat(devkit / fname, {"annotations": rec})
        keys[f"{split}_labels"] = {k: (7 * i + 3) % 196 for i, k in enumerate(lab)}
    return root, planted, keys, verts


@pytest.fixture(scope="module")
def stanford_built(stanford_manual, tmp_path_factory):
    root, planted, keys, verts = stanford_manual
    data_dir = tmp_path_factory.mktemp("tfds")
    cfg = base.Pose3DConfig(name="v2_test", annotation_version=2, field_max_side=FIELD_MAX_SIDE, max_faces=MAX_FACES)
    dl = tfds.download.DownloadConfig(manual_dir=str(root))
    # tfds.data_source builds on first use (download_and_prepare_kwargs), like tfds.load.
    src = tfds.data_source("stanford_cars3d", split="train", data_dir=data_dir, builder_kwargs={"config": cfg},
                           download_and_prepare_kwargs={"download_config": dl})
    return data_dir, cfg, src


# ----------------------------------------------------------------------------- real data


def test_stanford_cars3d_geometry(release_dir, release_split, stanford_manual, stanford_built):
    root, planted, keys, _ = stanford_manual
    data_dir, cfg, src = stanford_built
    assert len(src) == len(keys["train"])
    mesh = mesh_lib.load_mesh(anno_lib.cad_path(root, "StanfordCars", CAR_ID), max_faces=MAX_FACES)
    table = release_split("StanfordCars", "train", 2)
    builder = tfds.builder("stanford_cars3d", data_dir=data_dir, config=cfg)
    names = builder.info.features["label"].names
    assert names[:2] == ["Make Model 000", "Make Model 001"] and len(names) == 196
    seen = set()
    for i in range(len(src)):
        ex = src[i]
        key = ex["image/filename"].decode()
        seen.add(key)
        ann = table[key]
        pose = [getattr(ann, k) for k in anno_lib.FLOAT_FIELDS]
        hw = tuple(ex["image"].shape[:2])
        assert tuple(ex["image/size"]) == hw and ex["image/size"].dtype == np.int32
        assert ex["label"] == keys["train_labels"][key]
        assert ex["category"] == 0 and ex["model_id"].decode() == CAR_ID
        np.testing.assert_allclose(ex["pose"], np.float32(pose))
        r, k, p = ref_camera(pose, hw)
        np.testing.assert_allclose(ex["rotation"], r, atol=2e-6)
        np.testing.assert_allclose(ex["intrinsics"], k, rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(ex["projection"], p, rtol=2e-6, atol=5e-3)
        assert ex["mask"].shape[:2] == field_size(hw, FIELD_MAX_SIDE) and ex["mask"].shape[2] == 1
        box_f = check_field(ex["mask"], ex["location_field"], pose, hw, mesh.vertices)
        fh, fw = ex["mask"].shape[:2]
        np.testing.assert_allclose(ex["box"], box_f * np.array([hw[0] / fh, hw[1] / fw] * 2), rtol=1e-5)
        if key == "00001.jpg":
            assert hw == (400, 600)
            # The projected box of the spec, (y0, x0, y1, x1) ~ (60, 23, 187, 284) at width
            # 300, i.e. doubled on the 600 x 400 photo; one field pixel is ~2.3 photo pixels.
            np.testing.assert_allclose(ex["box"], np.array([60, 23, 187, 284]) * 2.0, atol=3.5)
            photo = np.asarray(Image.open(release_dir / "Image/StanfordCars/cars_train/00001.jpg"))
            np.testing.assert_array_equal(ex["image"], photo)
    assert seen == set(keys["train"])


def test_stanford_cars3d_skips(stanford_manual, stanford_built):
    root, planted, keys, _ = stanford_manual
    data_dir, cfg, _ = stanford_built
    builder = tfds.builder("stanford_cars3d", data_dir=data_dir, config=cfg)
    report = json.loads((builder.data_path / base.SKIPPED_FILE).read_text())
    for split in ("train", "test"):
        assert report["splits"][split]["skipped"] == planted[split], split
        assert report["splits"][split]["generated"] == len(keys[split])
        assert builder.info.splits[split].num_examples == len(keys[split])
    assert report["total"] == sum(sum(p.values()) for p in planted.values())
    assert keys["bad_photo"] in report["keys"]["train"]["corrupt_photo"]
    assert builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD


def test_missing_label_source_fails_early(stanford_manual, tmp_path):
    root, _, _, _ = stanford_manual
    manual = tmp_path / "manual"
    shutil.copytree(root / "Anno3D", manual / "Anno3D")
    cfg = base.Pose3DConfig(name="v2_nolabels", annotation_version=2, field_max_side=FIELD_MAX_SIDE, max_faces=MAX_FACES)
    builder = tfds.builder("stanford_cars3d", data_dir=tmp_path / "data", config=cfg)
    with pytest.raises(base.MissingLabelsError, match="cars_meta.mat"):
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))


STAND_IN_HW = (300, 400)


def _stand_in_manual(release_dir, root, dataset, counts, synset_dir, vertices):
    """Manual dir for compcars3d / fgvc_aircraft3d: the first real records (per split,
    ``counts[split]`` of them) whose pose keeps the car mesh inside a 400 x 300 placeholder
    photo, re-pointed at the car mesh (the only CAD model available). Returns the keys."""
    cad = root / "CAD" / synset_dir / CAR_ID / "model.obj"
    cad.parent.mkdir(parents=True)
    os.symlink(anno_lib.cad_path(release_dir, "StanfordCars", CAR_ID), cad)
    chosen = {}
    for split, n in counts.items():
        table = anno_lib.load_split(release_dir, dataset, split, 1)
        keys = [k for k, a in table.items() if _in_frame(a, STAND_IN_HW, vertices)][:n]
        records = {}
        for k in keys:
            rec = table[k].to_record()
            rec["model_id"] = CAR_ID
            records[k] = rec
            path = anno_lib.image_path(root, dataset, split, k)
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full(STAND_IN_HW + (3,), 128, np.uint8)).save(path)
        _write_raw(anno_lib.annotation_path(root, dataset, split, 1), records)
        chosen[split] = keys
    return chosen


def test_compcars3d_labels(release_dir, tmp_path, cache_env, car_vertices):
    from tfds_builders.compcars3d.compcars3d_dataset_builder import CLASS_NAMES

    root = tmp_path / "manual"
    keys = _stand_in_manual(release_dir, root, "CompCars", {"train": 2, "test": 1}, "02958343", car_vertices)
    train = keys["train"]
    cfg = base.Pose3DConfig(name="v1_test", annotation_version=1, field_max_side=FIELD_MAX_SIDE, max_faces=MAX_FACES)
    builder = tfds.builder("compcars3d", data_dir=tmp_path / "data", config=cfg)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root)))
    src = builder.as_data_source(split="train")
    got = {src[i]["image/filename"].decode(): src[i]["label"] for i in range(len(src))}
    # Class = the CompCars model id (second key component) among the 113 sorted numerically.
    assert got == {k: sorted(CLASS_NAMES, key=int).index(k.split("/")[1]) for k in train}
    assert builder.info.features["label"].num_classes == 113
    assert builder.info.features["category"].names == ["car", "airplane"]


@pytest.mark.slow
def test_fgvc_aircraft3d_labels(release_dir, tmp_path, cache_env, car_vertices):
    root = tmp_path / "manual"
    keys = _stand_in_manual(release_dir, root, "FGVC_Aircraft", {"train": 2, "test": 1}, "02691156", car_vertices)
    train, test = keys["train"], keys["test"]
    data = root / "fgvc-aircraft-2013b" / "data"
    data.mkdir(parents=True)
    variants = [f"Variant-{i}" for i in range(100)]
    (data / "variants.txt").write_text("\n".join(variants) + "\n")
    ids = [k[:-4] for k in train + test]
    (data / "images_variant_trainval.txt").write_text(f"{ids[0]} Variant-7\n{ids[1]} Variant-42\n")
    (data / "images_variant_test.txt").write_text(f"{ids[2]} Variant-99\n")
    cfg = base.Pose3DConfig(name="v1_test", annotation_version=1, field_max_side=FIELD_MAX_SIDE, max_faces=MAX_FACES)
    builder = tfds.builder("fgvc_aircraft3d", data_dir=tmp_path / "data", config=cfg)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root)))
    src = builder.as_data_source(split="train")
    got = {src[i]["image/filename"].decode(): int(src[i]["label"]) for i in range(len(src))}
    assert got == {train[0]: 7, train[1]: 42}
    assert builder.info.features["label"].names[:2] == ["Variant-0", "Variant-1"]
    assert int(builder.as_data_source(split="test")[0]["category"]) == 1  # airplane


# ----------------------------------------------------------------------------- subprocesses
#
# TensorFlow and Mesa's OSMesa (pyrender) crash when loaded into one process here (segfault
# on draw or on TF import, "free(): invalid pointer" at exit). This process stays free of
# both: builds and data_source need neither; tf.data (tfds.load) and pyrender run in child
# processes.

REPO = pathlib.Path(__file__).resolve().parents[1]


def run_child(code: str, *args: str, timeout: float = 240) -> dict:
    """Runs ``code`` in a fresh interpreter (repo root on the path); returns its last
    stdout line as JSON."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


TFDS_LOAD = """
import json, sys
import numpy as np
import tensorflow_datasets as tfds
import tfds_builders
from tfds_builders import base
from tfds_builders.synthetic_pose3d.synthetic_pose3d_dataset_builder import SyntheticConfig
result = []
for name, data_dir, cfg in json.loads(sys.argv[1]):
    config = (SyntheticConfig if name == "synthetic_pose3d" else base.Pose3DConfig)(**cfg)
    ds = tfds.load(name, split="train", data_dir=data_dir, builder_kwargs={"config": config})
    out = []
    for ex in tfds.as_numpy(ds):
        out.append({"filename": ex["image/filename"].decode(), "image": list(ex["image"].shape),
                    "mask_sum": int(ex["mask"].sum()), "loc_dtype": str(ex["location_field"].dtype),
                    "box": ex["box"].tolist(), "label": int(ex["label"])})
    result.append(out)
print(json.dumps(result))
"""


def check_tfds_load(got, source):
    """tf.data examples (``got``, from a child process) equal the data_source's."""
    want = {}
    for i in range(len(source)):
        ex = source[i]
        want[ex["image/filename"].decode()] = ex
    assert sorted(g["filename"] for g in got) == sorted(want)
    for g in got:
        ex = want[g["filename"]]
        assert g["image"] == list(ex["image"].shape) and g["label"] == int(ex["label"])
        assert g["mask_sum"] == int(ex["mask"].sum()) and g["loc_dtype"] == "float16"
        np.testing.assert_array_equal(np.float32(g["box"]), ex["box"])


# ----------------------------------------------------------------------------- synthetic


SYN = dict(name="test_small", num_car_classes=2, num_airplane_classes=1, num_train=4, num_test=1,
           max_side=160, field_max_side=160, seed=3)

SYN_BUILD = """
import json, sys
import numpy as np
import tensorflow_datasets as tfds
import tfds_builders
from fgpose import synthetic
from tfds_builders.synthetic_pose3d.synthetic_pose3d_dataset_builder import SyntheticConfig, sample_example
data_dir, cfg, ref = sys.argv[1], SyntheticConfig(**json.loads(sys.argv[2])), sys.argv[3]
builder = tfds.builder("synthetic_pose3d", data_dir=data_dir, config=cfg)
builder.download_and_prepare()
if ref:  # pyrender's own photo and object mask (depth > 0) of every train example
    classes = synthetic.synthetic_classes(cfg.num_car_classes, cfg.num_airplane_classes, seed=cfg.catalogue_seed)
    points = [synthetic.extent_points(c.mesh) for c in classes]
    arrays = {}
    for index in range(cfg.num_train):
        label, hw, pose, rng = sample_example(cfg, classes, points, "train", index)
        photo, mask = synthetic.render_photo(classes[label].mesh, pose, hw, rng, category=classes[label].category,
                                             parts=classes[label].parts, return_mask=True)
        arrays[f"photo_{index}"], arrays[f"mask_{index}"] = photo, mask
        arrays[f"vertices_{label}"] = classes[label].mesh.vertices
    np.savez(ref, names=np.array([c.name for c in classes]), **arrays)
print(json.dumps(builder.skipped["splits"]))
"""


@pytest.fixture(scope="module")
def synthetic_builds(tmp_path_factory):
    """The same small synthetic config built twice in two fresh processes, plus pyrender's
    own photos and object masks of the first build's train examples."""
    from tfds_builders.synthetic_pose3d.synthetic_pose3d_dataset_builder import SyntheticConfig

    first, second = tmp_path_factory.mktemp("syn_a"), tmp_path_factory.mktemp("syn_b")
    ref = first / "pyrender_ref.npz"
    splits = run_child(SYN_BUILD, str(first), json.dumps(SYN), str(ref))
    assert splits["train"] == {"generated": SYN["num_train"], "skipped": {}}
    run_child(SYN_BUILD, str(second), json.dumps(SYN), "")
    return SyntheticConfig(**SYN), first, second, dict(np.load(ref))


@pytest.mark.slow
def test_synthetic_deterministic(synthetic_builds):
    cfg, first, second, _ = synthetic_builds
    for split, n in (("train", SYN["num_train"]), ("test", SYN["num_test"])):
        a = tfds.data_source("synthetic_pose3d", split=split, data_dir=first, builder_kwargs={"config": cfg})
        b = tfds.data_source("synthetic_pose3d", split=split, data_dir=second, builder_kwargs={"config": cfg})
        assert len(a) == len(b) == n
        for i in range(n):
            ea, eb = a[i], b[i]
            assert ea.keys() == eb.keys()
            for k in ea:
                np.testing.assert_array_equal(ea[k], eb[k], err_msg=f"{split}[{i}] {k}")
    a = tfds.data_source("synthetic_pose3d", split="train", data_dir=first, builder_kwargs={"config": cfg})
    assert len({tuple(a[i]["pose"]) for i in range(len(a))}) == len(a)  # distinct poses


@pytest.mark.slow
def test_synthetic_matches_pyrender(synthetic_builds):
    from fgpose import synthetic
    from tfds_builders.synthetic_pose3d.synthetic_pose3d_dataset_builder import sample_example

    cfg, first, _, ref = synthetic_builds
    classes = synthetic.synthetic_classes(SYN["num_car_classes"], SYN["num_airplane_classes"], seed=cfg.catalogue_seed)
    points = [synthetic.extent_points(c.mesh) for c in classes]
    builder = tfds.builder("synthetic_pose3d", data_dir=first, config=cfg)
    assert builder.info.features["label"].names == [c.name for c in classes] == list(ref["names"])
    src = builder.as_data_source(split="train")
    for i in range(len(src)):
        ex = src[i]
        index = int(ex["image/filename"].decode().split(".")[0])
        label, hw, pose, _ = sample_example(cfg, classes, points, "train", index)
        cls = classes[label]
        assert ex["label"] == label and ex["model_id"].decode() == cls.model_id
        assert ex["category"] == ["car", "airplane"].index(cls.category)
        assert tuple(ex["image/size"]) == hw == ex["image"].shape[:2]
        np.testing.assert_allclose(ex["pose"], np.float32(pose))
        # The stored photo is pyrender's photo (JPEG-compressed; other photos differ by ~50) ...
        photo = ref[f"photo_{index}"].astype(float)
        assert np.abs(ex["image"].astype(float) - photo).mean() < 8.0
        assert np.corrcoef(ex["image"].ravel(), photo.ravel())[0, 1] > 0.98
        # ... and its object pixels (pyrender depth > 0) are the JAX mask's.
        mask, gl_mask = ex["mask"][..., 0].astype(bool), ref[f"mask_{index}"]
        assert mask.shape == gl_mask.shape  # field = photo size (max_side = field_max_side)
        iou = (mask & gl_mask).sum() / (mask | gl_mask).sum()
        assert iou > 0.99, iou
        rows, cols = np.nonzero(gl_mask)
        gl_box = [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]
        np.testing.assert_allclose(ex["box"], gl_box, atol=1.0)  # field = photo here
        check_field(ex["mask"], ex["location_field"], pose, hw, ref[f"vertices_{label}"], shrink_px=6.0)
        _, _, p = ref_camera(pose, hw)
        np.testing.assert_allclose(ex["projection"], p, rtol=2e-6, atol=5e-3)


@pytest.mark.slow
def test_tfds_load(synthetic_builds, request):
    """tfds.load (tf.data over the array_record files) in a TensorFlow child process; the
    StanfordCars3D part needs FGPOSE_RELEASE_DIR."""
    syn_cfg, syn_dir, _, _ = synthetic_builds
    jobs = [("synthetic_pose3d", str(syn_dir), SYN)]
    sources = [tfds.data_source("synthetic_pose3d", split="train", data_dir=syn_dir, builder_kwargs={"config": syn_cfg})]
    if anno_lib.release_dir() is not None and anno_lib.release_dir().is_dir():
        data_dir, cfg, src = request.getfixturevalue("stanford_built")
        cfg_dict = dict(name=cfg.name, annotation_version=cfg.annotation_version,
                        field_max_side=cfg.field_max_side, max_faces=cfg.max_faces)
        jobs.append(("stanford_cars3d", str(data_dir), cfg_dict))
        sources.append(src)
    got = run_child(TFDS_LOAD, json.dumps(jobs))
    assert len(got) == len(sources)
    for examples, source in zip(got, sources):
        check_tfds_load(examples, source)


SYN_REAL = dict(name="test_real", num_car_classes=1, num_airplane_classes=1, num_train=4, num_test=1,
                max_side=160, field_max_side=160, seed=5, max_faces=6000, real_meshes=True)


@pytest.mark.slow
def test_synthetic_with_real_meshes(release_dir, tmp_path):
    """``real_meshes=True`` adds a class for the release's ShapeNet car and the PyVista
    aircraft; their examples' location fields lie on those (normalised) meshes."""
    import trimesh
    from scipy.spatial import cKDTree

    from fgpose import mesh as mesh_lib
    from tfds_builders.synthetic_pose3d.synthetic_pose3d_dataset_builder import SyntheticConfig

    splits = run_child(SYN_BUILD, str(tmp_path), json.dumps(SYN_REAL), "")
    assert splits["train"] == {"generated": 4, "skipped": {}}
    cfg = SyntheticConfig(**SYN_REAL)
    builder = tfds.builder("synthetic_pose3d", data_dir=tmp_path, config=cfg)
    names = builder.info.features["label"].names
    assert names[2:] == ["car_shapenet_189c2b53", "airplane_pyvista"], names
    car = mesh_lib.load_mesh(anno_lib.cad_path(release_dir, "StanfordCars", CAR_ID), normalize=True)
    # The full-resolution car's surface, densely sampled (spacing ~1e-3 of its diagonal).
    samples, _ = trimesh.sample.sample_surface(trimesh.Trimesh(car.vertices, car.faces, process=False), 400_000,
                                               seed=0)
    reference = cKDTree(samples)
    src = builder.as_data_source(split="train")
    seen = set()
    for i in range(len(src)):
        ex = src[i]
        seen.add(int(ex["label"]))
        check_field(ex["mask"], ex["location_field"], ex["pose"], tuple(ex["image/size"]),
                    builder.class_meshes()[ex["label"]].vertices, shrink_px=6.0)
        if names[ex["label"]] == "car_shapenet_189c2b53":
            points = ex["location_field"][ex["mask"][..., 0] > 0].astype(np.float64)
            distance, _ = reference.query(points[:: max(1, len(points) // 300)])
            # On the full-resolution car (the class mesh is decimated to 6000 faces; float16 field).
            assert np.median(distance) < 4e-3 and distance.max() < 2e-2, (np.median(distance), distance.max())
    assert seen == {0, 1, 2, 3}
