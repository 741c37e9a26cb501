"""Training throughput (images/s) and inference latency (ms/image) of the pose detector.

Times the jitted, sharded training step of :mod:`fgpose.train` and the jitted ``predict`` of
:mod:`fgpose.evaluate` on random batches in the input pipeline's layout (the dicts of
:func:`fgpose.data.preprocess_example` stacked by :func:`fgpose.data.collate`; no pipeline
or dataset needed) for each config: by default R50-FPN at the paper's input size
(``configs/stanford_cars3d.py``, 800x1344) and the CPU config (``configs/synthetic.py``).
Compilation is excluded (one warm-up call); each timing is the median over ``--steps``
calls, synchronised with ``block_until_ready``.

    .venv/bin/python scripts/bench_train.py [--configs stanford_cars3d,synthetic]
        [--batch 2] [--steps 3] [--num_classes 196] [--out out/bench_train.json]

Prints a table and the device, and writes JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import time

import _bench_common as common  # puts this checkout's packages first on sys.path

import jax
import jax.numpy as jnp
import numpy as np

from fgpose import camera, distributed, evaluate, train

ROOT = common.REPO


def load_config(name: str):
    path = ROOT / "configs" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_cfg_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config()


def random_batch(batch: int, input_size: tuple[int, int], max_boxes: int, num_classes: int, seed: int = 0):
    """A batch as :func:`fgpose.data.collate` stacks :func:`fgpose.data.preprocess_example` outputs:
    noise images, one object per image with a consistent pose and box."""
    rng = np.random.default_rng(seed)
    h_in, w_in = input_size
    orig_h, orig_w = 2 * h_in, 2 * w_in  # photos twice the frame size (scale 0.5, no padding)
    scale = min(h_in / orig_h, w_in / orig_w)
    fh = camera.annotation_frame_height(orig_w, orig_h)
    poses = np.zeros((batch, max_boxes, 7), np.float32)
    boxes = np.zeros((batch, max_boxes, 4), np.float32)
    corners = np.array([[x, y, z] for x in (-0.4, 0.4) for y in (-0.15, 0.15) for z in (-0.2, 0.2)], np.float32)
    for i in range(batch):
        p = np.array([rng.uniform(0, 6.28), rng.uniform(0.05, 0.3), 0.0, rng.uniform(2.0, 3.0), 450.0, 0.0, 0.0],
                     np.float32)
        proj = camera.projection_matrix(camera.Pose.from_array(jnp.asarray(p)), fh, image_size=(orig_h, orig_w))
        xy = np.asarray(camera.project_points(proj, jnp.asarray(corners))[0]) * scale
        poses[i, 0] = p
        boxes[i, 0] = [xy[:, 1].min(), xy[:, 0].min(), xy[:, 1].max(), xy[:, 0].max()]
    box_valid = np.zeros((batch, max_boxes), bool)
    box_valid[:, 0] = True
    return {
        "image": rng.integers(0, 255, (batch, h_in, w_in, 3), dtype=np.uint8),
        "image_hw": np.tile(np.array([[round(orig_h * scale), round(orig_w * scale)]], np.int32), (batch, 1)),
        "original_hw": np.tile(np.array([[orig_h, orig_w]], np.int32), (batch, 1)),
        "scale": np.full((batch,), scale, np.float32),
        "boxes": boxes,
        "box_valid": box_valid,
        "labels": rng.integers(0, num_classes, (batch, max_boxes)).astype(np.int32) * box_valid,
        "pose": poses,
        "frame_height": np.full((batch,), fh, np.float32),
        "index": np.arange(batch, dtype=np.int32),
        "valid": np.ones((batch,), bool),
    }


def bench(name: str, batch: int | None, steps: int, num_classes: int | None) -> dict:
    config = load_config(name)
    n_dev = jax.device_count()
    if batch is None:  # the config's batch for small inputs, one image per device at paper size
        h, w = config.data.input_size
        batch = config.train.global_batch_size if h * w <= 256 * 256 else n_dev
    batch = max(n_dev, batch // n_dev * n_dev)
    config.train.global_batch_size = batch
    config.eval.batch_size = batch
    config.train.init_checkpoint = None
    num_classes = num_classes or config.dataset.num_classes or 16
    config.dataset.num_classes = num_classes
    train.validate_config(config)
    t0 = time.perf_counter()
    s = train.setup(config, num_classes)
    host = random_batch(batch, tuple(config.data.input_size), int(config.data.max_boxes), num_classes)
    gb = distributed.global_batch(host, s.mesh)
    state, opt = s.state, s.opt_state
    t1 = time.perf_counter()
    state, opt, m = s.train_step(state, opt, gb, jnp.int32(0))
    jax.block_until_ready(m)
    compile_train = time.perf_counter() - t1
    holder = {"state": state, "opt": opt, "step": 1}

    def one_step():
        holder["state"], holder["opt"], metrics = s.train_step(holder["state"], holder["opt"], gb,
                                                               jnp.int32(holder["step"]))
        holder["step"] += 1
        return metrics

    t_train = common.median_time(one_step, steps)
    predict = evaluate.make_predict_fn(s.graphdef, s.mesh, s.state_shardings)
    t1 = time.perf_counter()
    jax.block_until_ready(predict(holder["state"], gb))
    compile_pred = time.perf_counter() - t1
    t_pred = common.median_time(lambda: predict(holder["state"], gb), steps)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(s.state["params"]))
    return {
        "config": name,
        "backbone": f"R{config.model.backbone.depth} width {config.model.backbone.width}",
        "input_size": list(config.data.input_size),
        "batch": batch,
        "compute_dtype": config.model.compute_dtype,
        "params_million": n_params / 1e6,
        "train_images_per_s": batch / t_train,
        "train_step_s": t_train,
        "infer_ms_per_image": 1000 * t_pred / batch,
        "compile_train_s": compile_train,
        "compile_predict_s": compile_pred,
        "setup_s": t1 - t0 - compile_train,
        "loss": float(m["loss"]),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="stanford_cars3d,synthetic")
    ap.add_argument("--batch", type=int, default=None,
                    help="global batch (default: the config's for inputs <= 256x256, else one per device)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--num_classes", type=int, default=None)
    ap.add_argument("--out", default=str(ROOT / "out" / "bench_train.json"))
    args = ap.parse_args(argv)
    dev = jax.devices()[0]
    device = f"{jax.device_count()} x {dev.platform}:{getattr(dev, 'device_kind', '')} ({platform.processor() or platform.machine()})"
    print(f"device: {device}; jax {jax.__version__}")
    rows = []
    for name in args.configs.split(","):
        r = bench(name.strip(), args.batch, args.steps, args.num_classes)
        rows.append(r)
        print(json.dumps(r))
    print(common.text_table(
        [("config", "<16"), ("backbone", "<14"), ("input", ">10"), ("batch", ">5"), ("train img/s", ">12.3f"),
         ("infer ms/img", ">13.1f"), ("compile s", ">10.1f")],
        [[r["config"], r["backbone"], "x".join(map(str, r["input_size"])), r["batch"], r["train_images_per_s"],
          r["infer_ms_per_image"], r["compile_train_s"] + r["compile_predict_s"]] for r in rows]))
    common.write_json(args.out, {"device": device, "jax": jax.__version__, "results": rows}, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
