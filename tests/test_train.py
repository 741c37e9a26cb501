"""Training loop: LR schedule, optimizer, sharded step (1 vs 4 devices), two processes, resume.

The mechanics tests use a small stand-in model with the detector's interface
(``losses(batch, key)``, ``predict(batch)``) and in-memory section-A examples fed through the
real input pipeline (``fgpose.data.make_train_iterator(..., source=...)``), so they stay fast
and test the loop, not the detector. Multi-device and multi-process runs happen in
subprocesses (``XLA_FLAGS`` must be set before JAX starts); they import this file as a module
and call :func:`_worker`.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fgpose import camera

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent

NUM_CLASSES = 3
BOX_CORNERS = np.array([[x, y, z] for x in (-0.3, 0.3) for y in (-0.15, 0.15) for z in (-0.2, 0.2)])


# ----------------------------------------------------------------------------- stand-ins


def make_examples(n: int, seed: int = 0, hw=(48, 64)) -> list[dict]:
    """``n`` section-A examples: a coloured box per class drawn where a random pose projects it."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = hw if i % 2 == 0 else (hw[1], hw[0])
        fh = camera.annotation_frame_height(w, h)
        pose = np.array([rng.uniform(0, 2 * np.pi), rng.uniform(0.05, 0.4), rng.uniform(-0.1, 0.1),
                         rng.uniform(2.5, 3.5), rng.uniform(400, 600), rng.uniform(-10, 10), rng.uniform(-10, 10)],
                        np.float32)
        p = camera.projection_matrix(camera.Pose.from_array(jnp.asarray(pose)), fh, image_size=(h, w))
        xy, _ = camera.project_points(p, jnp.asarray(BOX_CORNERS, jnp.float32))
        xy = np.asarray(xy)
        box = np.array([xy[:, 1].min(), xy[:, 0].min(), xy[:, 1].max(), xy[:, 0].max()], np.float32)
        box = np.clip(box, 0, [h, w, h, w]).astype(np.float32)
        label = int(rng.integers(NUM_CLASSES))
        img = (rng.random((h, w, 3)) * 60).astype(np.uint8)
        y0, x0, y1, x1 = np.round(box).astype(int)
        img[y0:y1, x0:x1] = np.array([(200, 40, 40), (40, 200, 40), (40, 40, 200)][label], np.uint8)
        out.append({"image": img, "label": label, "pose": pose, "box": box})
    return out


class StandIn(nnx.Module):
    """A tiny CNN with the detector's interface: pose/box/class regression of the one object."""

    def __init__(self, model_config, num_classes: int, *, rngs: nnx.Rngs):
        self.num_classes = num_classes
        self.conv1 = nnx.Conv(3, 8, (3, 3), strides=(2, 2), rngs=rngs)
        self.norm = nnx.GroupNorm(8, num_groups=2, rngs=rngs)
        self.conv2 = nnx.Conv(8, 16, (3, 3), strides=(2, 2), rngs=rngs)
        self.head = nnx.Linear(16, num_classes + 4 + 7, rngs=rngs)
        self.calls = nnx.Variable(jnp.zeros((), jnp.int32))  # non-Param state carried by the step

    def _forward(self, batch, key=None):
        x = batch["image"].astype(jnp.float32) / 255.0 - 0.5
        x = jax.nn.relu(self.norm(self.conv1(x)))
        if key is not None:  # stochastic feature dropout: the step key must matter
            x = x * jax.random.bernoulli(key, 0.9, x.shape) / 0.9
        x = jax.nn.relu(self.conv2(x)).mean(axis=(1, 2))
        out = self.head(x)
        c = self.num_classes
        return out[:, :c], out[:, c:c + 4], out[:, c + 4:]

    @staticmethod
    def _pose_targets(batch):
        pose = batch["pose"][:, 0]
        return jnp.stack([jnp.cos(pose[:, 0]), jnp.sin(pose[:, 0]), pose[:, 1], pose[:, 2], pose[:, 3] / 3,
                          pose[:, 4] / 500, pose[:, 5] / 10, ], -1)

    def losses(self, batch, key):
        logits, box, pose = self._forward(batch, key)
        self.calls[...] = self.calls[...] + 1
        hw = jnp.asarray(batch["image"].shape[1:3] * 2, jnp.float32)
        box_t = batch["boxes"][:, 0] / hw
        pose_t = self._pose_targets(batch)[:, :7]
        w = batch["valid"].astype(jnp.float32)
        lab = batch["labels"][:, 0]
        cls = -jnp.take_along_axis(jax.nn.log_softmax(logits), lab[:, None], -1)[:, 0]
        l_cls = jnp.sum(w * cls) / jnp.maximum(w.sum(), 1)
        l_box = jnp.sum(w[:, None] * (box - box_t) ** 2) / jnp.maximum(w.sum(), 1)
        l_pose = jnp.sum(w[:, None] * (pose - pose_t) ** 2) / jnp.maximum(w.sum(), 1)
        total = l_cls + l_box + l_pose
        return total, {"cls": l_cls, "box": l_box, "pose": l_pose}

    def predict(self, batch):
        logits, box, pose = self._forward(batch)
        hw = jnp.asarray(batch["image"].shape[1:3] * 2, jnp.float32)
        box = box * hw
        box = jnp.concatenate([jnp.minimum(box[:, :2], box[:, 2:]), jnp.maximum(box[:, :2], box[:, 2:])], -1)
        prob = jax.nn.softmax(logits)
        top_class = jnp.argmax(prob, -1)
        top_score = jnp.max(prob, -1)
        azimuth = jnp.arctan2(pose[:, 1], pose[:, 0])
        p7 = jnp.stack([azimuth, pose[:, 2], pose[:, 3], pose[:, 4] * 3, pose[:, 5] * 500, pose[:, 6] * 10,
                        jnp.zeros_like(azimuth)], -1)
        p7 = p7.at[:, 6].set(0.0)
        proj = camera.projection_matrix(camera.Pose.from_array(p7), batch["frame_height"],
                                        image_size=(batch["original_hw"][:, 0], batch["original_hw"][:, 1]))
        k = 2
        boxes = jnp.stack([box, box * 0.5], 1)
        scores = jnp.stack([top_score, top_score * 0.5], 1)
        classes = jnp.stack([top_class, (top_class + 1) % self.num_classes], 1)
        return {"boxes": boxes, "scores": scores, "classes": classes, "valid": jnp.ones((box.shape[0], k), bool),
                "top_box": box, "top_score": top_score, "top_class": top_class, "pose": p7, "projection": proj}


def standin_fn(config, num_classes, seed):
    return StandIn(config.model, num_classes, rngs=nnx.Rngs(seed))


EXAMPLES_SEED = 0


def train_iter_fn(examples):
    from fgpose.data import make_train_iterator

    def fn(config, start_step, pi, pc):
        return make_train_iterator(config, start_step, pi, pc, source=examples)

    return fn


def tiny_config(**overrides):
    from configs import tiny

    c = tiny.get_config()
    c.dataset.num_classes = NUM_CLASSES
    c.train.num_steps = 6
    c.train.log_every = 1
    c.train.checkpoint_every = 3
    c.train.global_batch_size = 4
    c.train.tensorboard = False
    c.optim.warmup_steps = 2
    c.optim.decay_steps = (4,)
    c.optim.base_lr = 0.05
    c.data.input_size = (32, 32)
    c.data.num_workers = 0
    for k, v in overrides.items():
        node = c
        *parents, leaf = k.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = v
    return c


def run_training(workdir, config, stop_after=None, examples=None):
    """Runs the loop in this process; returns (per-step losses, host params as a flat dict)."""
    from fgpose import train

    losses = {}
    res = train.train_and_evaluate(
        config, workdir, model_fn=standin_fn, train_iterator_fn=train_iter_fn(examples or make_examples(12)),
        eval_fn=lambda s, step: None, num_classes=NUM_CLASSES, stop_after=stop_after, progress=False,
        log_fn=lambda step, m: losses.__setitem__(step, m["loss"]))
    from fgpose import distributed

    params = distributed.to_host(res["setup"].state["params"])
    flat = {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
            for path, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    calls = int(np.asarray(distributed.to_host(res["setup"].state["rest"])["calls"][...]))
    return losses, flat, calls


def _worker(args_json: str) -> None:
    """Subprocess entry: optional distributed init, train, save losses/params to ``out``."""
    args = json.loads(args_json)
    from fgpose import distributed

    config = tiny_config(**args.get("overrides", {}))
    if args.get("coordinator"):
        config.distributed.initialize = True
        config.distributed.coordinator_address = args["coordinator"]
        config.distributed.num_processes = args["num_processes"]
        config.distributed.process_id = args["process_id"]
        distributed.initialize(config)
    losses, params, calls = run_training(args["workdir"], config)
    np.savez(args["out"], **{"param/" + k: v for k, v in params.items()},
             losses=np.array([losses[s] for s in sorted(losses)]), calls=calls,
             devices=jax.device_count(), processes=jax.process_count())


def _spawn(args: dict, devices: int, extra_env=None) -> subprocess.Popen:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env.update(extra_env or {})
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import test_train; test_train._worker({json.dumps(json.dumps(args))})"
    return subprocess.Popen([sys.executable, "-c", code], cwd=str(ROOT), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait(procs, timeout=240):
    outs = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        outs.append(out)
        assert p.returncode == 0, f"worker failed (rc {p.returncode}):\n{out[-4000:]}"
    return outs


def _load(path):
    d = np.load(path)
    params = {k[len("param/"):]: d[k] for k in d.files if k.startswith("param/")}
    return d["losses"], params, d


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """6 uninterrupted steps on this process's single CPU device."""
    assert jax.device_count() == 1
    work = tmp_path_factory.mktemp("ref")
    return run_training(work, tiny_config())


# ----------------------------------------------------------------------------- unit tests


def test_learning_rate_schedule_matches_detectron_formula():
    import ml_collections

    from fgpose.optim import learning_rate_schedule

    optim = ml_collections.ConfigDict(dict(base_lr=0.02, warmup_steps=500, warmup_factor=1 / 3,
                                           decay_steps=(60000, 80000), decay_factor=0.1))
    sched = learning_rate_schedule(optim)
    for step in (0, 1, 250, 499, 500, 59999, 60000, 79999, 80000, 100000):
        # Detectron2 WarmupMultiStepLR (linear), written out independently.
        warm = 1.0 if step >= 500 else (1 / 3) * (1 - step / 500) + step / 500
        expected = 0.02 * warm * 0.1 ** sum(step >= d for d in (60000, 80000))
        np.testing.assert_allclose(float(sched(step)), expected, rtol=1e-6)


def test_optimizer_sgd_momentum_weight_decay_and_clipping_reference():
    """Two steps against a NumPy SGD: clip -> + wd*w on kernels only -> momentum -> update."""
    from fgpose.config import base_config
    from fgpose.optim import make_optimizer

    optim = base_config().optim
    optim.update(dict(base_lr=0.1, warmup_steps=0, warmup_factor=1.0, decay_steps=(1,), decay_factor=0.5,
                      momentum=0.9, weight_decay=0.01, clip_norm=1.0))
    tx = make_optimizer(optim)
    params = {"kernel": jnp.array([[1.0, -2.0], [0.5, 3.0]]), "bias": jnp.array([1.0, -1.0])}
    grads = [{"kernel": jnp.array([[3.0, 0.0], [0.0, 4.0]]), "bias": jnp.array([0.0, 0.0])},
             {"kernel": jnp.array([[0.1, 0.2], [0.0, 0.0]]), "bias": jnp.array([0.3, 0.0])}]
    state = tx.init(params)
    p_np = {k: np.asarray(v, np.float64) for k, v in params.items()}
    buf = {k: np.zeros_like(v) for k, v in p_np.items()}
    for step, g in enumerate(grads):
        updates, state = tx.update(g, state, params)
        params = jax.tree.map(lambda p, u: p + u, params, updates)
        g_np = {k: np.asarray(v, np.float64) for k, v in g.items()}
        norm = np.sqrt(sum((v ** 2).sum() for v in g_np.values()))
        scale = min(1.0, 1.0 / norm)
        lr = 0.1 * (0.5 if step >= 1 else 1.0)
        for k in p_np:
            d = g_np[k] * scale + (0.01 * p_np[k] if k == "kernel" else 0.0)
            buf[k] = 0.9 * buf[k] + d
            p_np[k] = p_np[k] - lr * buf[k]
    for k in p_np:
        np.testing.assert_allclose(np.asarray(params[k]), p_np[k], rtol=1e-6, atol=1e-7)


def test_fsdp_spec_picks_largest_divisible_axis():
    from jax.sharding import PartitionSpec as P

    from fgpose.distributed import fsdp_spec

    assert fsdp_spec((3, 3, 64, 128), 4) == P(None, None, None, "data")
    assert fsdp_spec((1024, 6), 4) == P("data", None)
    assert fsdp_spec((1023, 7), 4) == P()  # nothing divisible
    assert fsdp_spec((8,), 4) == P()  # too small to bother
    assert fsdp_spec((64, 64), 1) == P()


# ----------------------------------------------------------------------------- loop tests


def test_reference_run_trains(reference):
    losses, params, calls = reference
    assert sorted(losses) == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(v) for v in losses.values())
    assert calls == 6  # the model's non-Param state is carried through the step


@pytest.mark.slow
def test_resume_gives_identical_params(tmp_path, reference):
    """3 steps + stop + restart for the remaining 3 == 6 uninterrupted steps (same data, keys)."""
    from fgpose.checkpoint import CheckpointManager

    ref_losses, ref_params, _ = reference
    losses1, _, _ = run_training(tmp_path, tiny_config(), stop_after=2)
    mgr = CheckpointManager(tmp_path / "checkpoints")
    assert mgr.latest_step() == 2  # the stop wrote a checkpoint
    mgr.close()
    losses2, params, calls = run_training(tmp_path, tiny_config())
    assert sorted(losses2) == [3, 4, 5, 6]
    for s in (1, 2):
        np.testing.assert_allclose(losses1[s], ref_losses[s], rtol=1e-6)
    for s in (3, 4, 5, 6):
        np.testing.assert_allclose(losses2[s], ref_losses[s], rtol=1e-6)
    assert params.keys() == ref_params.keys()
    for k in params:
        np.testing.assert_allclose(params[k], ref_params[k], rtol=1e-6, atol=1e-7, err_msg=k)
    assert calls == 6
    mgr = CheckpointManager(tmp_path / "checkpoints", keep=2)
    assert mgr.all_steps() == [3, 6]  # periodic (3), final (6); keep_checkpoints=2 dropped 2
    mgr.close()


@pytest.mark.slow
def test_four_devices_match_one_device(tmp_path, reference):
    ref_losses, ref_params, _ = reference
    for sharding in ("replicated", "fsdp"):
        out = tmp_path / f"{sharding}.npz"
        args = {"workdir": str(tmp_path / sharding), "out": str(out),
                "overrides": {"train.param_sharding": sharding}}
        _wait([_spawn(args, devices=4)])
        losses, params, d = _load(out)
        assert int(d["devices"]) == 4
        np.testing.assert_allclose(losses, [ref_losses[s] for s in sorted(ref_losses)], rtol=1e-5, atol=1e-6)
        for k in ref_params:
            np.testing.assert_allclose(params[k], ref_params[k], rtol=1e-5, atol=1e-6, err_msg=f"{sharding} {k}")


@pytest.mark.slow
def test_two_processes_match_single_process(tmp_path, reference):
    ref_losses, ref_params, _ = reference
    port = _free_port()
    procs = []
    for pid in range(2):
        args = {"workdir": str(tmp_path / "work"), "out": str(tmp_path / f"p{pid}.npz"),
                "coordinator": f"127.0.0.1:{port}", "num_processes": 2, "process_id": pid}
        procs.append(_spawn(args, devices=1))
    _wait(procs)
    results = [_load(tmp_path / f"p{pid}.npz") for pid in range(2)]
    for losses, params, d in results:
        assert int(d["processes"]) == 2 and int(d["devices"]) == 2
        np.testing.assert_allclose(losses, [ref_losses[s] for s in sorted(ref_losses)], rtol=1e-5, atol=1e-6)
        for k in ref_params:
            np.testing.assert_allclose(params[k], ref_params[k], rtol=1e-5, atol=1e-6, err_msg=k)
    for k in ref_params:
        np.testing.assert_array_equal(results[0][1][k], results[1][1][k])


# ----------------------------------------------------------------------------- real detector

def _detector_or_skip():
    try:
        from fgpose.models import detector
    except ImportError as exc:
        pytest.skip(f"fgpose.models.detector not available yet: {exc}")
    return detector


def _real_config(steps: int):
    c = tiny_config()
    c.train.num_steps = steps
    c.data.input_size = (64, 64)
    c.train.log_every = max(1, steps // 4)
    c.train.checkpoint_every = steps
    return c


@pytest.mark.slow
def test_real_detector_trains_and_evaluates(tmp_path):
    """Smoke: the real tiny detector through 2 loop steps, checkpoint, and evaluation."""
    _detector_or_skip()
    from fgpose import evaluate, train
    from fgpose.data import make_eval_iterator

    config = _real_config(2)
    examples = make_examples(8, seed=3, hw=(48, 64))
    res = train.train_and_evaluate(config, tmp_path, train_iterator_fn=train_iter_fn(examples),
                                   eval_fn=lambda s, step: None, num_classes=NUM_CLASSES, progress=False)
    assert res["step"] == 2 and np.isfinite(res["metrics"]["loss"])
    out = evaluate.evaluate_workdir(
        config, tmp_path, num_classes=NUM_CLASSES,
        eval_iterator_fn=lambda c, split, pi, pc: make_eval_iterator(c, split, pi, pc, source=examples))
    assert out["count"] == 8 and (tmp_path / "eval" / "2.json").exists()


@pytest.mark.slow
def test_real_detector_overfits_eight_images(tmp_path):
    """8 synthetic images, tiny detector at 64 px: training-set median rotation error < 5 deg."""
    _detector_or_skip()
    from fgpose import train
    from fgpose.data import make_eval_iterator

    config = _real_config(500)
    config.optim.base_lr = 0.02
    config.optim.warmup_steps = 20
    config.optim.decay_steps = (400,)
    config.eval.max_examples = 8
    config.train.final_eval = True
    examples = make_examples(8, seed=4, hw=(48, 64))
    res = train.train_and_evaluate(
        config, tmp_path, train_iterator_fn=train_iter_fn(examples), num_classes=NUM_CLASSES, progress=False,
        eval_fn=lambda s, step: __import__("fgpose.evaluate").evaluate.evaluate(
            config, tmp_path, s.graphdef, s.state, mesh=s.mesh, step=step, state_shardings=s.state_shardings,
            num_classes=NUM_CLASSES,
            eval_iterator_fn=lambda c, split, pi, pc: make_eval_iterator(c, split, pi, pc, source=examples)))
    assert res["eval"]["rot_median_deg"] < 5.0, res["eval"]


@pytest.mark.slow
def test_init_checkpoint_loads_matching_params_and_reinitialises_class_layers(tmp_path, reference):
    """compcars3d_ft-style transfer: a 3-class run initialises a 5-class model."""
    from fgpose import checkpoint, distributed, train

    ref_losses, ref_params, _ = reference
    _, trained_flat, _ = run_training(tmp_path / "src", tiny_config(**{"train.num_steps": 2}))
    config = tiny_config()
    fresh = train.setup(config, 5, model_fn=standin_fn)
    loaded = checkpoint.load_params_from(tmp_path / "src", fresh.state, fresh.state_shardings)
    src = distributed.to_host(train.setup(config, 3, model_fn=standin_fn).state["params"])
    got = distributed.to_host(loaded["params"])
    init = distributed.to_host(fresh.state["params"])
    trained = checkpoint.CheckpointManager(tmp_path / "src" / "checkpoints")
    step = trained.latest_step()
    trained.close()
    assert step == 2
    # Shape-compatible layers come from the source run's final (trained) values ...
    key = next(k for k in trained_flat if k.startswith("conv1/kernel"))
    np.testing.assert_array_equal(np.asarray(got["conv1"]["kernel"][...]), trained_flat[key])
    assert not np.allclose(np.asarray(got["conv1"]["kernel"][...]), np.asarray(src["conv1"]["kernel"][...]))
    # ... the class-dependent head (3+11 vs 5+11 outputs) keeps the fresh 5-class init.
    np.testing.assert_array_equal(np.asarray(got["head"]["kernel"][...]), np.asarray(init["head"]["kernel"][...]))
    assert got["head"]["kernel"][...].shape == (16, 5 + 4 + 7)


# ----------------------------------------------------------------------------- structure


def test_frozen_patterns_zero_exactly_the_matching_updates():
    """``optim.frozen_patterns`` match '/'-joined parameter paths of the split model state."""
    import optax

    from fgpose.config import base_config
    from fgpose.models.build import split_model
    from fgpose.optim import make_optimizer

    optim = base_config().optim
    optim.frozen_patterns = (r"^conv1/",)
    _, abstract = split_model(nnx.eval_shape(lambda: StandIn(None, NUM_CLASSES, rngs=nnx.Rngs(0))))
    params = jax.tree.map(lambda x: jnp.full(x.shape, 0.5, x.dtype), abstract["params"])
    grads = jax.tree.map(jnp.ones_like, params)
    tx = make_optimizer(optim)
    new = jax.jit(lambda p, g: optax.apply_updates(p, tx.update(g, tx.init(p), p)[0]))(params, grads)
    for name in ("conv1", "conv2", "head", "norm"):
        for leaf in ("kernel", "bias", "scale"):
            if leaf not in new[name]:
                continue
            changed = not np.array_equal(np.asarray(new[name][leaf][...]), np.asarray(params[name][leaf][...]))
            assert changed == (name != "conv1"), (name, leaf)


def test_metric_writer_event_file_has_tensorboard_scalars(tmp_path):
    """The event file read back with TensorFlow's record reader: one scalar per finite value."""
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    from fgpose.metric_writer import MetricWriter

    w = MetricWriter(tmp_path / "tb")
    w.write_scalars(3, {"loss": 1.5, "bad": float("nan")}, prefix="train/")
    w.write_scalars(7, {"loss": np.float32(0.25)}, prefix="train/")
    w.close()
    w.close()  # idempotent
    got = []
    for path in sorted((tmp_path / "tb").iterdir()):
        for record in tf.data.TFRecordDataset(str(path)):
            event = event_pb2.Event.FromString(record.numpy())
            for v in event.summary.value:
                assert v.metadata.plugin_data.plugin_name == "scalars"
                got.append((event.step, v.tag, float(tf.make_ndarray(v.tensor))))
    assert got == [(3, "train/loss", 1.5), (7, "train/loss", 0.25)]
    disabled = MetricWriter(tmp_path / "off", enabled=False)
    disabled.write_scalars(1, {"loss": 1.0})
    disabled.close()
    assert not (tmp_path / "off").exists()


def _imports(path: pathlib.Path) -> set[str]:
    """Every module ``path`` imports (``from a import b`` counts as ``a`` and ``a.b``), lazy ones too."""
    import ast

    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def test_imports_run_one_way():
    """distributed -> checkpoint -> evaluate -> train; tfds_builders below fgpose.data, reached
    only through fgpose.data.registry."""
    def module(path):
        return ".".join(path.relative_to(ROOT).with_suffix("").parts)

    files = {module(p): _imports(p) for d in ("fgpose", "tfds_builders") for p in (ROOT / d).rglob("*.py")}
    assert "fgpose.train" in files and "fgpose.data.registry" in files

    def imports(mod, target):
        return any(i == target or i.startswith(target + ".") for i in files[mod])

    for mod in files:
        if mod != "fgpose.data.registry":
            assert not imports(mod, "tfds_builders") or mod.startswith("tfds_builders"), mod
        if mod.startswith("tfds_builders"):
            for higher in ("fgpose.data", "fgpose.config", "fgpose.models", "fgpose.optim", "fgpose.checkpoint",
                           "fgpose.evaluate", "fgpose.train"):
                assert not imports(mod, higher), (mod, higher)
        if mod != "fgpose.train":
            assert not imports(mod, "fgpose.train"), mod
    assert not any(i.startswith("fgpose") for i in files["fgpose.distributed"])
    for higher in ("fgpose.evaluate", "fgpose.train"):
        assert not imports("fgpose.checkpoint", higher)
    assert imports("fgpose.evaluate", "fgpose.checkpoint") and imports("fgpose.train", "fgpose.evaluate")
