#!/usr/bin/env python
"""Benchmark: refinement objectives against segmentation-like errors in the reference masks.

Data (every frame 300 x 200, as in ``scripts/bench_refine.py``):

* **car**: the release's real ShapeNet car and its 85 StanfordCars annotations
  (:func:`bench_refine.load_pairs`): start = human v1, truth = refined v2, clean reference =
  the full-mesh silhouette at v2.
* **aircraft**: ``<release>/../meshes/airplane.ply`` (PyVista's aircraft, put in ShapeNet's
  frame by :func:`fgpose.synthetic.shapes.synthetic_classes`) at FGVC-Aircraft3D poses:
  truth = a record's v2, start = the same record's v1 (a real v1 -> v2 difference is the
  perturbation); records are taken evenly over the test split, keeping those whose truth
  silhouette lies inside the frame (>= 1.5 % of it, touching no edge) and whose start
  silhouette has IoU >= 0.5 with it.

Noise (each clean reference degraded independently, seeded per image; ``NOISE_KINDS``):

* ``bias``: boundary bias, dilation (``+s``) or erosion (``-s``) by a disk of radius ``|s|`` px;
* ``ragged``: ragged boundary, the signed distance to the boundary plus a smooth random
  field of amplitude ``s`` px (Gaussian noise blurred with sigma 3 px), thresholded at 0;
* ``blobs``: ``s`` random disks (radius 3-8 px) centred within 6 px of the boundary, each
  added or cut out with probability 1/2;
* ``thin``: a missing thin part: opening with a disk of radius ``s`` px removes every part
  thinner than ``2 s`` (mirrors, wheels seen edge-on, wing tips, tails);
* ``occluder``: a background rectangle covering a fraction ``s`` of the mask's bounding box,
  placed at a random position along its border;
* ``seg``: the segmentation-like mixture at strength ``s``: bias of a random sign and
  ``s`` px, ragged with amplitude ``1.5 s``, and ``round(3 s)`` blobs;
* ``softseg``: a soft probability map: the ``seg`` mask blurred (Gaussian, sigma ``1 + s``
  px); the hard objectives see it binarised at 0.5, ``soft`` objectives as probabilities.

Objectives (:mod:`fgpose.refine.objective`): ``--objectives`` (hard noise) and ``--soft-objectives``
(the ``softseg`` rows only: on a 0/1 mask a ``soft`` term changes nothing). Every search
runs the fast CLI setting: ``paper`` schedule, coarse 2 to alpha 0.25, the car's visible
faces decimated to 7,500 (coarse pass 5,000), the aircraft's 2,452 faces as they are.

Reported per (noise, objective): the median IoU of the final pose's full-mesh silhouette
with the **clean** reference; the fraction of poses **closer to the truth** than their start
-- by the pose distance ``sum_i |p_i - t_i| / b_i`` (angles wrapped, ``b`` the pooled prior
scales of :mod:`fgpose.refine.prior`: one unit = a typical human error on one parameter) --
and, separately, by the rotation angle between the rotations; the median absolute error per
parameter (degrees, model units, px); and images/s of the search (compile excluded,
measured on every row, so the ratios to ``iou`` compare the same images and masks).

Writes JSON (``--json``), prints Markdown tables, and draws median clean IoU against noise
strength per objective (``--figure``).

Usage::

    FGPOSE_RELEASE_DIR=../shared/finegrained_pose .venv/bin/python scripts/bench_refine_robust.py --quick
    FGPOSE_RELEASE_DIR=../shared/finegrained_pose .venv/bin/python scripts/bench_refine_robust.py   # ~40 min on a loaded 2-core CPU, half of it compiling
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import sys
import time

import cv2
import numpy as np

from bench_refine import FRAME_HEIGHT, MODEL_ID, load_pairs, log, make_iou_evaluator, resolve_release_dir

NOISE_KINDS = ("clean", "bias", "ragged", "blobs", "thin", "occluder", "seg", "softseg")
FULL_NOISE = (("clean", 0), ("seg", 1), ("seg", 1.5), ("seg", 2.5), ("softseg", 1.5), ("bias", -2), ("ragged", 3),
              ("blobs", 6), ("thin", 2), ("occluder", 0.15))
QUICK_NOISE = (("clean", 0), ("seg", 1.5), ("softseg", 1.5))
OBJECTIVES = "iou,band:2,map,offset:2+map"
SOFT_OBJECTIVES = "soft+map"
TARGET_NOISE_IOU = 0.92


# ----------------------------------------------------------------------------- noise


def _disk(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _bias(m: np.ndarray, s: float) -> np.ndarray:
    r = int(round(abs(s)))
    if r == 0:
        return m
    op = cv2.dilate if s > 0 else cv2.erode
    return op(m.astype(np.uint8), _disk(r)) > 0


def _signed_distance(m: np.ndarray) -> np.ndarray:
    u = m.astype(np.uint8)
    return (cv2.distanceTransform(u, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
            - cv2.distanceTransform(1 - u, cv2.DIST_L2, cv2.DIST_MASK_PRECISE))


def _ragged(m: np.ndarray, s: float, rng) -> np.ndarray:
    field = cv2.GaussianBlur(rng.standard_normal(m.shape).astype(np.float32), (0, 0), 3.0)
    field *= s / max(float(field.std()), 1e-6)
    return _signed_distance(m) + field > 0


def _blobs(m: np.ndarray, count: int, rng) -> np.ndarray:
    out = m.astype(np.uint8).copy()
    edge = np.argwhere(np.abs(_signed_distance(m)) <= 6)
    for _ in range(int(count)):
        if not len(edge):
            break
        y, x = edge[rng.integers(len(edge))]
        cv2.circle(out, (int(x), int(y)), int(rng.integers(3, 9)), int(rng.random() < 0.5), -1)
    return out > 0


def _thin(m: np.ndarray, s: float) -> np.ndarray:
    return cv2.morphologyEx(m.astype(np.uint8), cv2.MORPH_OPEN, _disk(int(round(s)))) > 0


def _occluder(m: np.ndarray, s: float, rng) -> np.ndarray:
    ys, xs = np.nonzero(m)
    if not len(ys):
        return m
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    bh, bw = y1 - y0, x1 - x0
    aspect = rng.uniform(0.5, 2.0)
    h = int(np.clip(np.sqrt(s * bh * bw * aspect), 1, bh))
    w = int(np.clip(s * bh * bw / h, 1, bw))
    side = rng.integers(4)  # the rectangle sits on one side of the bounding box
    ry = y0 if side == 0 else y1 - h if side == 1 else rng.integers(y0, y1 - h + 1)
    rx = x0 if side == 2 else x1 - w if side == 3 else rng.integers(x0, x1 - w + 1)
    out = m.copy()
    out[ry:ry + h, rx:rx + w] = False
    return out


def degrade(mask: np.ndarray, kind: str, s: float, rng: np.random.Generator) -> np.ndarray:
    """One degraded reference: ``(H, W)`` bool for hard kinds, float32 probabilities for ``softseg``
    (module docstring)."""
    m = np.asarray(mask, bool)
    if kind == "clean":
        return m
    if kind == "bias":
        return _bias(m, s)
    if kind == "ragged":
        return _ragged(m, s, rng)
    if kind == "blobs":
        return _blobs(m, s, rng)
    if kind == "thin":
        return _thin(m, s)
    if kind == "occluder":
        return _occluder(m, s, rng)
    if kind in ("seg", "softseg"):
        out = _bias(m, s * (1 if rng.random() < 0.5 else -1))
        out = _ragged(out, 1.5 * s, rng)
        out = _blobs(out, round(3 * s), rng)
        if kind == "seg":
            return out
        return np.clip(cv2.GaussianBlur(out.astype(np.float32), (0, 0), 1.0 + s), 0.0, 1.0)
    raise ValueError(f"unknown noise kind {kind!r}; choose from {NOISE_KINDS}")


def hard_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image IoU of ``(N, H, W)`` masks (floats binarised at 0.5)."""
    a = a >= 0.5 if a.dtype != bool else a
    b = b >= 0.5 if b.dtype != bool else b
    inter = np.count_nonzero(a & b, axis=(1, 2))
    union = np.count_nonzero(a | b, axis=(1, 2))
    return inter / np.maximum(union, 1)


# ----------------------------------------------------------------------------- poses


def wrapped_diff(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``p - q`` (..., 7) with the three angles wrapped to [-pi, pi)."""
    d = np.asarray(p, np.float64) - np.asarray(q, np.float64)
    d[..., :3] = (d[..., :3] + np.pi) % (2 * np.pi) - np.pi
    return d


def pose_distance(p: np.ndarray, q: np.ndarray, scale) -> np.ndarray:
    """``sum_i |p_i - q_i| / b_i`` (angles wrapped): the module docstring's pose distance."""
    return np.sum(np.abs(wrapped_diff(p, q)) / np.asarray(scale), axis=-1)


def rotation_angle(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Angle in degrees between the camera rotations of poses ``p`` and ``q`` (N, 7)."""
    from fgpose import camera  # noqa: PLC0415

    rp = np.asarray(camera.rotation_matrix(*(np.asarray(p, np.float64)[:, i] for i in range(3))))
    rq = np.asarray(camera.rotation_matrix(*(np.asarray(q, np.float64)[:, i] for i in range(3))))
    cos = (np.einsum("nij,nij->n", rp, rq) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


# ----------------------------------------------------------------------------- data


class Case:
    """One dataset: search mesh(es), full-mesh IoU evaluator, starts, truths, clean references."""

    def __init__(self, name, search_mesh, coarse_mesh, full_mesh, starts, truths, keys, batch):
        self.name, self.search_mesh, self.coarse_mesh = name, search_mesh, coarse_mesh
        self.starts, self.truths, self.keys = starts, truths, keys
        self.silhouettes, self.evaluate = make_iou_evaluator(full_mesh.vertices, full_mesh.faces, batch)
        self.clean = self.silhouettes(truths)


def car_case(root: pathlib.Path, n: int, batch: int) -> Case:
    from fgpose import mesh as mesh_lib  # noqa: PLC0415

    pairs = load_pairs(root)[:n]
    path = root / "CAD" / "02958343" / MODEL_ID / "model.obj"
    full = mesh_lib.load_mesh(path, cache_dir=False)
    search_mesh = mesh_lib.load_mesh(path, drop_hidden=True, max_faces=7500)
    coarse_mesh = mesh_lib.load_mesh(path, drop_hidden=True, max_faces=5000)
    return Case("car", search_mesh, coarse_mesh, full, np.stack([p[2] for p in pairs]),
                np.stack([p[3] for p in pairs]), [f"{p[0]}/{p[1]}" for p in pairs], batch)


def aircraft_case(root: pathlib.Path, n: int, batch: int) -> Case:
    from fgpose import annotations, camera  # noqa: PLC0415
    from fgpose.synthetic import shapes  # noqa: PLC0415

    path = root.parent / "meshes" / "airplane.ply"
    if not path.is_file():
        raise SystemExit(f"error: {path} does not exist")
    plane = shapes.synthetic_classes(0, 0, real_meshes=[("airplane", "airplane", path)], max_faces=10 ** 6)[0].mesh
    v1 = annotations.load_split(root, "FGVC_Aircraft", "test", 1)
    v2 = annotations.load_split(root, "FGVC_Aircraft", "test", 2)
    keys = [k for k in sorted(v2) if k in v1]
    pick = np.unique(np.linspace(0, len(keys) - 1, 8 * n).round().astype(int))
    cand = [keys[i] for i in pick]
    params = lambda rec: [getattr(rec, f) for f in camera.POSE_FIELDS]  # noqa: E731
    s = np.array([params(v1[k]) for k in cand], np.float32)
    t = np.array([params(v2[k]) for k in cand], np.float32)
    sil, ev = make_iou_evaluator(plane.vertices, plane.faces, batch)
    ref = sil(t)
    edge = ref[:, 0].any(1) | ref[:, -1].any(1) | ref[:, :, 0].any(1) | ref[:, :, -1].any(1)
    ok = (ref.mean((1, 2)) >= 0.015) & ~edge & (ev(s, ref) >= 0.5)
    idx = np.nonzero(ok)[0][:n]
    return Case("aircraft", plane, None, plane, s[idx], t[idx], [f"test/{cand[i]}" for i in idx], batch)


# ----------------------------------------------------------------------------- runs


class Runner:
    """Compiled searches per (case, objective), reused across noise settings."""

    def __init__(self, batch: int):
        self.batch = batch

    def run(self, case: Case, refs: np.ndarray, objective: str) -> tuple[np.ndarray, float, float]:
        """``(final poses (N, 7), search wall seconds and CPU seconds (this process, all threads)
        excluding compile, compile + first batch seconds)``."""
        from fgpose.refine import search  # noqa: PLC0415

        config = search.SearchConfig(schedule="paper", coarse=2, coarse_alpha=0.25, objective=objective)
        m, c = case.search_mesh, case.coarse_mesh
        coarse = None if c is None else (c.vertices, c.faces, None)
        n, b = len(case.starts), min(self.batch, len(case.starts))
        heights = np.full(b, FRAME_HEIGHT, np.int32)
        batches = []
        for s in range(0, n, b):
            idx = np.arange(s, min(s + b, n))
            batches.append((idx, np.concatenate([idx, np.repeat(idx[-1:], b - len(idx))])))
        t = time.perf_counter()
        search.refine(m.vertices, m.faces, case.starts[:b], refs[:b], heights, coarse_mesh=coarse, config=config)
        warm = time.perf_counter() - t  # compile (cached after the first noise setting) + one batch
        poses = np.zeros_like(case.starts)
        t, cpu = time.perf_counter(), time.process_time()
        for idx, idx_p in batches:
            res = search.refine(m.vertices, m.faces, case.starts[idx_p], refs[idx_p], heights, coarse_mesh=coarse,
                                config=config)
            poses[idx] = res.poses[: len(idx)]
        return poses, time.perf_counter() - t, time.process_time() - cpu, warm


def evaluate_row(case: Case, poses: np.ndarray, scale) -> dict:
    from fgpose import camera  # noqa: PLC0415

    iou = case.evaluate(poses, case.clean)
    closer = pose_distance(poses, case.truths, scale) < pose_distance(case.starts, case.truths, scale)
    rot_closer = rotation_angle(poses, case.truths) < rotation_angle(case.starts, case.truths)
    err = np.abs(wrapped_diff(poses, case.truths))
    err[:, :3] = np.degrees(err[:, :3])
    return {
        "iou": iou, "closer": closer, "rot_closer": rot_closer,
        "median_abs_error": {f: float(np.median(err[:, i])) for i, f in enumerate(camera.POSE_FIELDS)},
        "rotation_error_deg_median": float(np.median(rotation_angle(poses, case.truths))),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--release-dir", help="finegrained_pose release root (default: $FGPOSE_RELEASE_DIR)")
    ap.add_argument("--car-images", type=int, default=None, help="car poses (default 85 = all)")
    ap.add_argument("--aircraft-images", type=int, default=None, help="aircraft poses (default 16)")
    ap.add_argument("--objectives", default=OBJECTIVES, help=f"objectives on every noise (default {OBJECTIVES})")
    ap.add_argument("--soft-objectives", default=SOFT_OBJECTIVES,
                    help=f"extra objectives on soft references only (default {SOFT_OBJECTIVES})")
    ap.add_argument("--noise", default=None,
                    help="kind:strength,... (default: " + ",".join(f"{k}:{s:g}" for k, s in FULL_NOISE) + ")")
    ap.add_argument("--batch", type=int, default=None, help="images per search call (default 43)")
    ap.add_argument("--json", default="out/bench_refine_robust.json")
    ap.add_argument("--figure", default="docs/images/refine_robust.png")
    ap.add_argument("--quick", action="store_true", help="12 car + 8 aircraft images, noise clean, seg:1.5, softseg:1.5")
    args = ap.parse_args(argv)
    quick = dict(car_images=12, aircraft_images=8, batch=12, noise=QUICK_NOISE)
    full = dict(car_images=85, aircraft_images=16, batch=43, noise=FULL_NOISE)
    for k, v in (quick if args.quick else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if isinstance(args.noise, str):
        try:
            args.noise = tuple((k, float(s)) for k, s in (item.split(":") for item in args.noise.split(",")))
        except ValueError:
            raise SystemExit(f"error: --noise takes kind:strength,..., got {args.noise!r}") from None
    for kind, _ in args.noise:
        if kind not in NOISE_KINDS:
            raise SystemExit(f"error: unknown noise kind {kind!r}; choose from {NOISE_KINDS}")
    from fgpose.refine import objective as objective_lib  # noqa: PLC0415
    from fgpose.refine import prior  # noqa: PLC0415

    hard_objs = [o.strip() for o in args.objectives.split(",") if o.strip()]
    soft_objs = [o.strip() for o in args.soft_objectives.split(",") if o.strip()]
    for o in hard_objs + soft_objs:
        try:
            objective_lib.parse_objective(o)
        except ValueError as err:
            raise SystemExit(f"error: {err}") from None
    root = resolve_release_dir(args.release_dir)
    scale = prior.load_prior_scale()

    import jax  # noqa: PLC0415

    load0 = os.getloadavg()
    t0 = time.perf_counter()
    cases = [car_case(root, args.car_images, args.batch)] if args.car_images > 0 else []
    if args.aircraft_images > 0:
        cases.append(aircraft_case(root, args.aircraft_images, args.batch))
    if not cases:
        raise SystemExit("error: no images: --car-images and --aircraft-images are both 0")
    log(f"data: {', '.join(f'{c.name} {len(c.starts)}' for c in cases)} ({time.perf_counter() - t0:.0f} s); "
        f"jax {jax.__version__} on {jax.devices()[0].platform}, load {load0[0]:.2f}")
    runner = Runner(args.batch)
    rows = []
    for kind, strength in args.noise:
        objs = hard_objs + (soft_objs if kind == "softseg" else [])
        per_case = []
        for ci, case in enumerate(cases):
            rngs = [np.random.default_rng([ci, i, NOISE_KINDS.index(kind), int(round(100 * abs(strength))),
                                           int(strength < 0)])
                    for i in range(len(case.starts))]
            refs = np.stack([degrade(m, kind, strength, r) for m, r in zip(case.clean, rngs)])
            per_case.append((case, refs, hard_iou(refs, case.clean)))
        noise_iou = float(np.median(np.concatenate([x[2] for x in per_case])))
        for obj in objs:
            row = {"noise": kind, "strength": strength, "noise_iou_median": noise_iou, "objective": obj, "cases": {}}
            all_iou, all_closer, all_rot, secs, cpu, images = [], [], [], 0.0, 0.0, 0
            for case, refs, _ in per_case:
                poses, seconds, cpu_s, warm = runner.run(case, refs, obj)
                ev = evaluate_row(case, poses, scale)
                start_iou = case.evaluate(case.starts, case.clean)
                row["cases"][case.name] = {
                    "images": len(poses), "seconds": seconds, "cpu_s": cpu_s, "warm_s": warm,
                    "median_iou_clean": float(np.median(ev["iou"])), "median_start_iou_clean": float(np.median(start_iou)),
                    "closer": float(ev["closer"].mean()), "rotation_closer": float(ev["rot_closer"].mean()),
                    "median_abs_error": ev["median_abs_error"],
                    "rotation_error_deg_median": ev["rotation_error_deg_median"],
                    "noise_iou_median": float(np.median(dict((c.name, x) for c, _, x in per_case)[case.name])),
                    "per_image_iou_clean": [float(x) for x in ev["iou"]],
                }
                all_iou.append(ev["iou"])
                all_closer.append(ev["closer"])
                all_rot.append(ev["rot_closer"])
                secs += seconds
                cpu += cpu_s
                images += len(poses)
            row.update(median_iou_clean=float(np.median(np.concatenate(all_iou))),
                       closer=float(np.mean(np.concatenate(all_closer))),
                       rotation_closer=float(np.mean(np.concatenate(all_rot))),
                       images=images, seconds=secs, images_per_s=images / secs, cpu_s_per_image=cpu / images)
            rows.append(row)
            log(f"{kind}:{strength:g} (noise IoU {noise_iou:.3f}) {obj:>14}: clean IoU {row['median_iou_clean']:.4f}, "
                f"closer {row['closer']:.2f} (rotation {row['rotation_closer']:.2f}), "
                f"{row['images_per_s']:.1f} images/s, {row['cpu_s_per_image']:.3f} CPU s/image")

    start_rows = {c.name: float(np.median(c.evaluate(c.starts, c.clean))) for c in cases}
    print(markdown(rows, hard_objs))
    load1 = os.getloadavg()
    out = pathlib.Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "argv": sys.argv[1:],
            "machine": platform.platform(), "cpus": os.cpu_count(), "jax": jax.__version__,
            "loadavg_start": load0, "loadavg_end": load1, "frame": [FRAME_HEIGHT, 300],
            "cases": {c.name: {"images": len(c.starts), "keys": c.keys, "search_faces": c.search_mesh.num_faces,
                               "median_start_iou_clean": start_rows[c.name]} for c in cases},
            "prior_scale": list(scale), "noise": [list(x) for x in args.noise], "target_noise_iou": TARGET_NOISE_IOU,
            "wall_s": time.perf_counter() - t0}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    log(f"wrote {out}")
    if args.figure:
        draw_figure(rows, hard_objs, pathlib.Path(args.figure))
        log(f"wrote {args.figure}")
    return 0


def markdown(rows: list[dict], hard_objs: list[str]) -> str:
    base = {(r["noise"], r["strength"]): r for r in rows if r["objective"] == "iou"}
    lines = ["| noise | noise IoU | objective | median IoU to clean | closer to truth | rotation closer | "
             "car / aircraft IoU | images/s | × iou time |", "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        b = base.get((r["noise"], r["strength"]))
        ratio = "—" if b is None else f"{b['images_per_s'] / r['images_per_s']:.2f}"
        per = " / ".join(f"{c['median_iou_clean']:.4f}" for c in r["cases"].values())
        lines.append(f"| {r['noise']}:{r['strength']:g} | {r['noise_iou_median']:.3f} | {r['objective']} | "
                     f"{r['median_iou_clean']:.4f} | {100 * r['closer']:.0f}% | {100 * r['rotation_closer']:.0f}% | "
                     f"{per} | {r['images_per_s']:.1f} | {ratio} |")
    return "\n".join(lines)


def draw_figure(rows: list[dict], hard_objs: list[str], path: pathlib.Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    objectives = sorted({r["objective"] for r in rows}, key=lambda o: (o not in hard_objs, o))
    for j, obj in enumerate(objectives):
        color = f"C{j}"
        line = sorted((r["noise_iou_median"], r["median_iou_clean"], r["closer"]) for r in rows
                      if r["objective"] == obj and r["noise"] in ("clean", "seg"))
        soft = [(r["noise_iou_median"], r["median_iou_clean"], r["closer"]) for r in rows
                if r["objective"] == obj and r["noise"] == "softseg"]
        for ax, k, scale in ((axes[0], 1, 1), (axes[1], 2, 100)):
            if line:
                ax.plot([p[0] for p in line], [scale * p[k] for p in line], "-o", color=color, label=f"{obj} (seg)")
            if soft:
                ax.plot([p[0] for p in soft], [scale * p[k] for p in soft], "x", ms=9, mew=2, color=color,
                        label=f"{obj} (softseg)")
    for ax, ylabel in zip(axes, ("median IoU to the clean mask", "% poses closer to the truth than v1")):
        ax.set_xlabel("noise: median IoU of the degraded mask to the clean one")
        ax.set_ylabel(ylabel)
        ax.invert_xaxis()
        ax.axvline(TARGET_NOISE_IOU, color="grey", lw=0.8, ls=":")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Refinement objectives under segmentation-like noise (car 85 + aircraft poses)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
