"""Tests of fgpose.data: order, resizing/box geometry, flip geometry, resumability, sharding.

A throwaway TFDS dataset with the section-A features is built in a temporary directory by a
minimal builder defined here (independent of tfds_builders/). Its boxes are the bounding boxes
of a z-symmetric point set projected with a float64 NumPy reference of the release camera, so
the batches' boxes and (possibly flipped) poses can be checked against each other.
"""

from __future__ import annotations

import types

import cv2
import numpy as np
import pytest
import tensorflow_datasets as tfds
from etils import epath

from fgpose import data as fdata
from fgpose.data import order, preprocess

NUM_TRAIN, NUM_TEST = 12, 5
INPUT_SIZE = (48, 64)
MAX_BOXES = 3
FIELD_MAX_SIDE = 24
# A box-shaped "car": half extents (0.4, 0.15, 0.2), symmetric about z = 0 (and x = 0, y = 0),
# plus an off-centre pair (x = 0.3) so the set is NOT symmetric about x = 0.
_CORNERS = np.array([[sx * 0.4, sy * 0.15, sz * 0.2] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
POINTS = np.concatenate([_CORNERS, [[0.3, 0.1, 0.15], [0.3, 0.1, -0.15]]])


# ----------------------------------------------------------------------------- float64 reference


def ref_rotation(a, e, t):
    """R = Rz(t) Rx(e) Ry(a) written from the release README (float64)."""
    ry = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(e), -np.sin(e)], [0, np.sin(e), np.cos(e)]])
    rz = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    return rz @ rx @ ry


def ref_project(pose, points, hw):
    """Pixels (N, 2) of model points in the original photo of size hw = (H, W), float64."""
    a, e, t, d, f, u, v = (float(x) for x in pose)
    H, W = hw
    h = int(H * 300 / W)
    k = np.array([[f, 0, u + 150], [0, f, v + h / 2], [0, 0, 1]])
    rt = np.concatenate([ref_rotation(a, e, t), [[0], [0], [-d]]], axis=1)
    p = np.diag([W / 300, H / h, 1.0]) @ k @ rt
    x = np.concatenate([points, np.ones((len(points), 1))], 1) @ p.T
    return x[:, :2] / x[:, 2:3]


def ref_box(pose, hw):
    xy = ref_project(pose, POINTS, hw)
    return np.array([xy[:, 1].min(), xy[:, 0].min(), xy[:, 1].max(), xy[:, 0].max()])


# ----------------------------------------------------------------------------- tiny dataset


def _make_example(rng, i):
    H, W = int(rng.integers(20, 60)), int(rng.integers(20, 80))
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    pose = np.array([
        rng.uniform(0, 2 * np.pi), rng.uniform(-0.3, 0.3), rng.uniform(-0.2, 0.2),
        rng.uniform(3.0, 4.0), rng.uniform(200, 300), rng.uniform(-15, 15), rng.uniform(-10, 10),
    ])
    s = min(1.0, FIELD_MAX_SIDE / max(H, W))
    h, w = round(H * s), round(W * s)
    mask = (rng.random((h, w, 1)) < 0.5).astype(np.uint8)
    loc = (rng.uniform(-0.5, 0.5, (h, w, 3)) * mask).astype(np.float16)
    eye = np.eye(3, dtype=np.float32)
    return f"{i:05d}", {
        "image": image,
        "image/filename": f"{i:05d}.jpg",
        "image/size": np.array([H, W], np.int32),
        "label": int(rng.integers(0, 3)),
        "model_id": "m0",
        "category": "car",
        "pose": pose.astype(np.float32),
        "rotation": eye,
        "intrinsics": eye,
        "projection": np.zeros((3, 4), np.float32),
        # float64 box from the float32-rounded pose: what the test recomputes.
        "box": ref_box(pose.astype(np.float32).astype(np.float64), (H, W)).astype(np.float32),
        "mask": mask,
        "location_field": loc,
    }


class TinyPoseDataPipelineTest(tfds.core.GeneratorBasedBuilder):
    """Section-A features, 12 train / 5 test random images of different sizes."""

    VERSION = tfds.core.Version("1.0.0")
    # The test module is not a package; TFDS looks for metadata files in this directory.
    pkg_dir_path = epath.Path(__file__).parent

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                "image/filename": tfds.features.Text(),
                "image/size": tfds.features.Tensor(shape=(2,), dtype=np.int32),
                "label": tfds.features.ClassLabel(names=["a", "b", "c"]),
                "model_id": tfds.features.Text(),
                "category": tfds.features.ClassLabel(names=["car", "airplane"]),
                "pose": tfds.features.Tensor(shape=(7,), dtype=np.float32),
                "rotation": tfds.features.Tensor(shape=(3, 3), dtype=np.float32),
                "intrinsics": tfds.features.Tensor(shape=(3, 3), dtype=np.float32),
                "projection": tfds.features.Tensor(shape=(3, 4), dtype=np.float32),
                "box": tfds.features.Tensor(shape=(4,), dtype=np.float32),
                "mask": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
                "location_field": tfds.features.Tensor(shape=(None, None, 3), dtype=np.float16, encoding="zlib"),
            })
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, NUM_TRAIN), "test": self._generate_examples(1, NUM_TEST)}

    def _generate_examples(self, seed, n):
        rng = np.random.default_rng(seed)
        for i in range(n):
            yield _make_example(rng, i)


NAME = "tiny_pose_data_pipeline_test"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tfds")
    builder = TinyPoseDataPipelineTest(data_dir=str(path))
    builder.download_and_prepare(file_format="array_record")
    return str(path)


def make_config(data_dir, *, hflip=False, num_workers=2, gbs=4, eval_bs=4, with_fields=False):
    ns = types.SimpleNamespace
    return ns(
        dataset=ns(name=NAME, builder_config=None, data_dir=data_dir, train_split="train", eval_split="test",
                   num_classes=3),
        data=ns(input_size=INPUT_SIZE, max_boxes=MAX_BOXES, hflip=hflip, num_workers=num_workers,
                with_fields=with_fields, symmetry_axis="z"),
        train=ns(global_batch_size=gbs, seed=7),
        eval=ns(batch_size=eval_bs),
    )


def assert_batches_equal(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# ----------------------------------------------------------------------------- order


def test_batch_indices_epochs_concatenate():
    n, g, seed = 12, 5, 3
    stream = np.concatenate([np.random.default_rng((seed, e)).permutation(n) for e in range(4)])
    got = np.concatenate([
        order.batch_indices(s, seed=seed, num_examples=n, global_batch_size=g) for s in range(8)
    ])
    np.testing.assert_array_equal(got, stream[:40])
    # Two processes: contiguous halves of the global batch.
    for s in range(8):
        parts = [order.batch_indices(s, seed=seed, num_examples=n, global_batch_size=6, process_index=p,
                                     process_count=2) for p in range(2)]
        np.testing.assert_array_equal(np.concatenate(parts), stream[6 * s:6 * s + 6])
    np.testing.assert_array_equal(
        order.batch_indices(2, seed=seed, num_examples=n, global_batch_size=g, shuffle=False),
        np.arange(10, 15) % n)
    with pytest.raises(ValueError, match="divisible"):
        order.batch_indices(0, seed=0, num_examples=n, global_batch_size=5, process_count=2)


def test_eval_indices_cover_once():
    n, g = 11, 4
    nb = order.num_eval_batches(n, g)
    assert nb == 3
    seen = [order.eval_batch_indices(b, num_examples=n, global_batch_size=g, process_index=p, process_count=2)
            for b in range(nb) for p in range(2)]
    flat = np.concatenate(seen)
    np.testing.assert_array_equal(np.sort(flat[flat >= 0]), np.arange(n))
    assert (flat == -1).sum() == nb * g - n


# ----------------------------------------------------------------------------- flip geometry


@pytest.mark.parametrize("symmetry_axis, mirror", [("z", [1, 1, -1]), ("x", [-1, 1, 1])])
def test_flip_pose_projects_mirrored_points(symmetry_axis, mirror):
    rng = np.random.default_rng(0)
    hw = (375, 500)
    pts = rng.uniform(-0.5, 0.5, (50, 3))
    mirrored = pts * np.array(mirror, float)
    for _ in range(20):
        pose = np.array([rng.uniform(-7, 7), rng.uniform(-1.2, 1.2), rng.uniform(-np.pi, np.pi),
                         rng.uniform(2, 5), rng.uniform(100, 3000), rng.uniform(-50, 50), rng.uniform(-50, 50)])
        flipped = preprocess.flip_pose(pose, symmetry_axis)
        xy = ref_project(pose, pts, hw)
        expected = np.stack([hw[1] - xy[:, 0], xy[:, 1]], 1)
        np.testing.assert_allclose(ref_project(flipped, mirrored, hw), expected, rtol=0, atol=1e-8)
    # The naive a' = -a is wrong for a z-symmetric object (the test can fail).
    if symmetry_axis == "z":
        naive = pose * np.array([-1, 1, -1, 1, 1, -1, 1])
        assert np.abs(ref_project(naive, mirrored, hw) - expected).max() > 1.0


def test_flip_boxes():
    b = np.array([[1.0, 2.0, 5.0, 7.5]])
    np.testing.assert_array_equal(preprocess.flip_boxes(b, 10.0), [[1.0, 2.5, 5.0, 8.0]])


# ----------------------------------------------------------------------------- TFDS pipeline


def test_missing_dataset_error(tmp_path):
    with pytest.raises(fdata.DatasetNotBuiltError, match="download_and_prepare") as info:
        fdata.open_tfds_source(NAME, "train", data_dir=tmp_path)
    assert str(tmp_path) in str(info.value)
    with pytest.raises(fdata.DatasetNotBuiltError, match="not found"):
        fdata.open_tfds_source("no_such_dataset_xyz", "train", data_dir=tmp_path)


def test_train_batches_shapes_boxes_and_geometry(data_dir):
    config = make_config(data_dir, hflip=True, with_fields=True)
    source = fdata.open_tfds_source(NAME, "train", data_dir=data_dir)
    assert len(source) == NUM_TRAIN
    assert isinstance(source[0]["image"], np.ndarray) and source[0]["image"].dtype == np.uint8
    it = fdata.make_train_iterator(config, 0, 0, 1)
    B, G, (hin, win) = 4, MAX_BOXES, INPUT_SIZE
    n_flipped = 0
    for step in range(6):  # two epochs
        batch = next(it)
        assert it.state == step + 1
        spec = {"image": ((B, hin, win, 3), np.uint8), "image_hw": ((B, 2), np.int32),
                "original_hw": ((B, 2), np.int32), "scale": ((B,), np.float32),
                "boxes": ((B, G, 4), np.float32), "box_valid": ((B, G), bool), "labels": ((B, G), np.int32),
                "pose": ((B, G, 7), np.float32), "frame_height": ((B,), np.float32),
                "index": ((B,), np.int32), "valid": ((B,), bool), "mask": ((B, hin, win), bool),
                "location_field": ((B, hin, win, 3), np.float32)}
        for k, (shape, dtype) in spec.items():
            assert batch[k].shape == shape and batch[k].dtype == dtype, k
        assert batch["valid"].all()
        for j in range(B):
            ex = source[int(batch["index"][j])]
            H, W = (int(x) for x in ex["image/size"])
            s = min(hin / H, win / W)  # float64 reference
            np.testing.assert_array_equal(batch["original_hw"][j], (H, W))
            np.testing.assert_allclose(batch["scale"][j], s, rtol=1e-7)
            ch, cw = round(H * s), round(W * s)
            np.testing.assert_array_equal(batch["image_hw"][j], (ch, cw))
            assert batch["frame_height"][j] == int(H * 300 / W)
            flipped = bool(batch["flipped"][j])
            n_flipped += flipped
            box = ex["box"].astype(np.float64)
            if flipped:
                box = np.array([box[0], W - box[3], box[2], W - box[1]])
            np.testing.assert_allclose(batch["boxes"][j, 0], box * s, rtol=1e-6, atol=1e-4)
            assert batch["box_valid"][j].tolist() == [True, False, False]
            assert not batch["boxes"][j, 1:].any() and not batch["pose"][j, 1:].any()
            assert batch["labels"][j, 0] == ex["label"]
            # The (possibly flipped) pose projects the z-symmetric model onto the GT box.
            np.testing.assert_allclose(ref_box(batch["pose"][j, 0].astype(np.float64), (H, W)) * s,
                                       batch["boxes"][j, 0], atol=2e-3)
            if not flipped:
                np.testing.assert_array_equal(batch["pose"][j, 0], ex["pose"])
            # Image: resized photo (AREA when shrinking, LINEAR when enlarging), zero padding.
            img = ex["image"][:, ::-1] if flipped else ex["image"]
            interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
            ref = cv2.resize(np.ascontiguousarray(img), (cw, ch), interpolation=interp)
            np.testing.assert_array_equal(batch["image"][j, :ch, :cw], ref)
            assert not batch["image"][j, ch:].any() and not batch["image"][j, :, cw:].any()
            # Fields: flipped with the photo, z negated, resized to the content frame.
            m = ex["mask"][:, :, 0] > 0
            loc = ex["location_field"].astype(np.float32)
            if flipped:
                m, loc = m[:, ::-1], loc[:, ::-1] * np.array([1, 1, -1], np.float32)
            fh, fw = m.shape
            rows = np.minimum(((np.arange(ch) + 0.5) * fh / ch).astype(int), fh - 1)
            cols = np.minimum(((np.arange(cw) + 0.5) * fw / cw).astype(int), fw - 1)
            np.testing.assert_array_equal(batch["mask"][j, :ch, :cw], m[rows][:, cols])
            np.testing.assert_array_equal(batch["location_field"][j, :ch, :cw], loc[rows][:, cols])
            assert not batch["mask"][j, ch:].any()
    it.close()
    assert 0 < n_flipped < 6 * B


def test_resume_and_process_split(data_dir):
    config = make_config(data_dir, hflip=True, gbs=4)
    fresh = fdata.make_train_iterator(config, 0, 0, 1)
    batches = [next(fresh) for _ in range(5)]
    fresh.close()
    resumed = fdata.make_train_iterator(config, 3, 0, 1)
    assert resumed.state == 3
    assert_batches_equal(next(resumed), batches[3])
    assert_batches_equal(next(resumed), batches[4])
    assert resumed.state == 5
    resumed.close()
    # Synchronous (num_workers=0) gives the same batches.
    sync = fdata.make_train_iterator(make_config(data_dir, hflip=True, num_workers=0), 0, 0, 1)
    assert_batches_equal(next(sync), batches[0])
    # Two simulated processes: their parts concatenate to the global batch.
    parts = [fdata.make_train_iterator(config, 2, p, 2) for p in range(2)]
    halves = [next(p) for p in parts]
    assert halves[0]["image"].shape[0] == 2
    for k in batches[2]:
        np.testing.assert_array_equal(np.concatenate([h[k] for h in halves]), batches[2][k], err_msg=k)
    for p in parts:
        p.close()


def test_eval_padding_covers_each_example_once(data_dir):
    config = make_config(data_dir, eval_bs=4)
    its = [fdata.make_eval_iterator(config, "test", p, 2) for p in range(2)]
    assert [len(i) for i in its] == [2, 2]
    per_process = [list(i) for i in its]
    assert [len(b) for b in per_process] == [2, 2]
    idx = np.concatenate([b["index"] for bs in per_process for b in bs])
    valid = np.concatenate([b["valid"] for bs in per_process for b in bs])
    np.testing.assert_array_equal(np.sort(idx[valid]), np.arange(NUM_TEST))
    assert (idx[~valid] == -1).all() and (~valid).sum() == 8 - NUM_TEST
    for bs in per_process:
        for b in bs:
            assert b["image"].shape == (2, *INPUT_SIZE, 3)
            assert not b["box_valid"][~b["valid"]].any()
            assert not b["image"][~b["valid"]].any()
            assert (b["scale"] > 0).all() and (b["original_hw"] > 0).all()
    # In order: process 0 has examples 0, 1 then 4; process 1 has 2, 3 then padding.
    np.testing.assert_array_equal(per_process[0][0]["index"], [0, 1])
    np.testing.assert_array_equal(per_process[1][1]["index"], [-1, -1])


def test_in_memory_source(data_dir):
    rng = np.random.default_rng(5)
    examples = [_make_example(rng, i)[1] for i in range(3)]
    # Encoded (lossless png) bytes are decoded to the same RGB array.
    ok, png = cv2.imencode(".png", cv2.cvtColor(examples[0]["image"], cv2.COLOR_RGB2BGR))
    assert ok
    encoded = [dict(examples[0], image=png.tobytes())] + examples[1:]
    config = make_config(data_dir, gbs=3, num_workers=0)
    batch = next(fdata.make_train_iterator(config, 0, 0, 1, source=fdata.InMemorySource(encoded)))
    assert batch["image"].shape == (3, *INPUT_SIZE, 3)
    np.testing.assert_array_equal(np.sort(batch["index"]), [0, 1, 2])
    for j, i in enumerate(batch["index"]):
        direct = preprocess.preprocess_example(examples[i], input_size=INPUT_SIZE, max_boxes=MAX_BOXES)
        for k, val in direct.items():
            np.testing.assert_array_equal(batch[k][j], val, err_msg=k)
