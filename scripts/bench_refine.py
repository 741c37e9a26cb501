#!/usr/bin/env python
"""Benchmark: annotation refinement (Algorithm 1), jitted batched search against the published loop.

Data: the release's real ShapeNet car (:data:`fgpose.annotations.EXAMPLE_CAR_MODEL_ID`,
29,226 triangles) and the 85 StanfordCars annotations (43 train + 42 test) that use it. For
each image the **reference mask** is the full-resolution silhouette (fgpose rasterizer) at
the refined v2 pose and the **start** is the human v1 pose, so the search has to recover
the release's own refinement. Every image uses a 200 x 300 annotation frame (frame height
200): the photos' real sizes are not part of the shared data.

Methods, all in one process:

* ``baseline``: :func:`fgpose.refine.baseline.refine_one` with the ``paper`` schedule and
  :func:`~fgpose.refine.baseline.pyrender_silhouette_fn` (OpenGL through OSMesa, mesh
  uploaded once, one pose per render, one image at a time), full mesh, on
  ``--baseline-images`` images (evenly spaced among the ``--images``; default all 85, ~3 min,
  so that the IoU comparison does not hinge on a few images); its images/s is measured on
  those and used as the reference speed.
* ``jitted``: :func:`fgpose.refine.search.refine` on batches of ``--batch`` images (the last
  batch is padded with copies of its last image; padding is timed, not counted), one row
  per schedule in ``--schedules``, mesh preparation in ``--hidden`` and mesh in
  ``--max-faces``. ``--hidden drop`` (the refine CLI's default) first drops the faces no
  distant viewpoint sees (:mod:`fgpose.visibility`; silhouettes unchanged, its time is
  reported once and not counted: the CLI caches it per model), ``keep`` keeps every face;
  then 0 = that mesh, K = decimated to at most K faces (:func:`fgpose.mesh.decimate`, the
  same as ``load_mesh(max_faces=K)``; decimation time is excluded).
  Compiled ahead of time first (compile time is reported separately), then timed. Each
  ``--coarse`` factor above 1 adds rows for the coarse-to-fine search (``SearchConfig.coarse``),
  whose coarse pass uses the mesh decimated to ``--coarse-max-faces`` when the search mesh
  is larger.

Quality is always measured the same way: the **final IoU of every method is re-evaluated
with the full-resolution mesh** (fgpose rasterizer) against the same reference, so a search
on a decimated mesh is not credited with its own, easier objective. Because the baseline
runs on a subset, each row also gives its mean final IoU on the baseline's images; the CPU
target compares that number with the baseline's. The final IoU of a greedy search depends on
its path (the exact published loop with another rasterizer ends 3e-4 lower on average), so
each row also reports the paired per-image difference from the baseline, mean +- standard
error.

Other processes may load the CPU: each row also records this process's CPU time per image
(all threads; pyrender/OSMesa uses about one core, XLA both) and the 1-min load average.

Usage::

    FGPOSE_RELEASE_DIR=../shared/finegrained_pose .venv/bin/python scripts/bench_refine.py
    .venv/bin/python scripts/bench_refine.py --release-dir ../shared/finegrained_pose --quick
    .venv/bin/python scripts/bench_refine.py --images 32 --baseline-images 4 --schedules paper --max-faces 0,5000
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform
import sys
import time

import numpy as np

import _bench_common as common
from _bench_common import log

DATASET = common.EXAMPLE_DATASET
FRAME_HEIGHT = 200
SPEED_TARGET = 20.0  # CPU target: >= 20x the baseline's images/s ...
IOU_TOLERANCE = 1e-4  # ... at a mean final IoU no lower than the baseline's minus this
TARGETS = (
    "CPU: >= 20x the baseline's images/s at equal or better final IoU",
    "H100: >= 100 images/s at full mesh resolution -- not measured here (no GPU)",
    "paper (Wang et al. 2018, published loop): about one minute per image",
)


# ----------------------------------------------------------------------------- data


def load_pairs(root: pathlib.Path) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """``(split, key, v1 params (7,), v2 params (7,))`` of the images of the release's car (by its
    v2 annotations), sorted by split, key."""
    from fgpose import camera  # noqa: PLC0415

    def params(rec) -> np.ndarray:
        return np.array([getattr(rec, k) for k in camera.POSE_FIELDS], np.float32)

    v1 = {(split, a.key): a for split, a in common.example_car_annotations(root, 1)}
    out = []
    for split, a2 in common.example_car_annotations(root, 2):
        a1 = v1.get((split, a2.key))
        if a1 is None:
            raise SystemExit(f"error: {split}/{a2.key} uses {a2.model_id} in v2 but not in v1")
        out.append((split, a2.key, params(a1), params(a2)))
    return out


# ----------------------------------------------------------------------------- helpers


class CompileWatch:
    """Sums XLA backend compile time reported by ``jax.monitoring`` while ``active``."""

    def __init__(self):
        import jax  # noqa: PLC0415

        self.active = False
        self.seconds = 0.0
        self.count = 0
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event: str, duration: float, **_) -> None:
        if self.active and event == "/jax/core/compile/backend_compile_duration":
            self.seconds += duration
            self.count += 1

    def start(self) -> None:
        self.active, self.seconds, self.count = True, 0.0, 0

    def stop(self) -> tuple[float, int]:
        self.active = False
        return self.seconds, self.count


def make_iou_evaluator(vertices, faces, batch: int):
    """``evaluate(params (N, 7), reference (N, H, 300)) -> (N,) float32`` IoU with the given (full) mesh."""
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    from fgpose import camera, raster  # noqa: PLC0415

    verts = jnp.asarray(vertices, jnp.float32)
    tris = jnp.asarray(faces, jnp.int32)

    @jax.jit
    def sil(v, f, params):
        proj = camera.projection_matrix(camera.Pose.from_array(params), jnp.float32(FRAME_HEIGHT))
        return raster.silhouette(v, f, proj, FRAME_HEIGHT, camera.ANNOTATION_WIDTH)

    def silhouettes(params: np.ndarray) -> np.ndarray:
        params = np.asarray(params, np.float32).reshape(-1, 7)
        out = []
        for s in range(0, len(params), batch):
            chunk = params[s : s + batch]
            pad = batch - len(chunk)
            padded = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)]) if pad else chunk
            out.append(np.asarray(sil(verts, tris, jnp.asarray(padded)))[: len(chunk)])
        return np.concatenate(out)

    def evaluate(params: np.ndarray, reference: np.ndarray) -> np.ndarray:
        sil_ = silhouettes(params)
        inter = np.count_nonzero(sil_ & reference, axis=(1, 2)).astype(np.float32)
        union = np.count_nonzero(sil_ | reference, axis=(1, 2)).astype(np.float32)
        return np.where(union > 0, inter / np.maximum(union, 1), 0).astype(np.float32)

    return silhouettes, evaluate


def summary_row(method, schedule, renderer, faces, n_images, batch, seconds, sweeps, iou_full, iou0, subset, extra):
    iou_full = np.asarray(iou_full, np.float64)
    return {
        "method": method,
        "schedule": schedule,
        "renderer": renderer,
        "search_faces": int(faces),
        "images": int(n_images),
        "batch": batch,
        "seconds": seconds,
        "images_per_s": n_images / seconds,
        "s_per_image": seconds / n_images,
        "median_sweeps": float(np.median(sweeps)),
        "max_sweeps_run": int(np.max(sweeps)),
        "median_iou": float(np.median(iou_full)),
        "mean_iou": float(np.mean(iou_full)),
        "min_iou": float(np.min(iou_full)),
        "median_initial_iou": float(np.median(iou0)),
        "mean_iou_baseline_images": float(np.mean(iou_full[subset])) if len(subset) else None,
        "cpu_s_per_image": extra["cpu_s"] / n_images,
        "loadavg_1min_after": os.getloadavg()[0],
        **extra,
    }


# ----------------------------------------------------------------------------- methods


def run_baseline(args, full_mesh, starts, refs, subset, evaluate):
    from tqdm import tqdm  # noqa: PLC0415

    from fgpose.pyrender_backend import PyrenderRenderer  # noqa: PLC0415
    from fgpose.refine import baseline  # noqa: PLC0415

    t = time.perf_counter()
    renderer = PyrenderRenderer(FRAME_HEIGHT, 300)
    renderer.set_mesh(full_mesh.vertices, full_mesh.faces)
    render = baseline.pyrender_silhouette_fn(renderer, FRAME_HEIGHT)
    render(starts[subset[0]])  # first render creates the GL context and uploads the mesh
    setup = time.perf_counter() - t
    results, times = [], []
    cpu0 = time.process_time()
    for i in tqdm(subset, desc="baseline (pyrender, paper)", unit="image", file=sys.stderr):
        t = time.perf_counter()
        results.append(baseline.refine_one(render, starts[i], refs[i], schedule="paper", max_sweeps=args.max_sweeps))
        times.append(time.perf_counter() - t)
    cpu_s = time.process_time() - cpu0
    renderer.close()
    params = np.stack([r.params for r in results])
    iou_full = evaluate(params, refs[subset])
    seconds = float(sum(times))
    renders = [r.renders for r in results]
    extra = {
        "cpu_s": cpu_s,
        "setup_s": setup,
        "s_per_image_median": float(np.median(times)),
        "renders_per_image_median": float(np.median(renders)),
        "ms_per_render": 1e3 * seconds / sum(renders),
        "own_renderer_mean_iou": float(np.mean([r.iou for r in results])),
        "initial_iou_mean": float(np.mean([r.initial_iou for r in results])),
        "image_indices": [int(i) for i in subset],
        "per_image_iou": [float(x) for x in iou_full],
        "per_image_sweeps": [int(r.sweeps) for r in results],
        "per_image_s": times,
    }
    row = summary_row(
        "baseline", "paper", "pyrender", full_mesh.num_faces, len(subset), 1, seconds,
        [r.sweeps for r in results], iou_full, [r.initial_iou for r in results], np.arange(len(subset)),
        {**extra, "hidden_faces": "kept"},
    )
    return row, iou_full


def run_jitted(args, base_mesh, hidden, max_faces, schedule, coarse, starts, refs, subset, evaluate, watch):
    """One jitted row: ``base_mesh`` (all faces, or the visible ones for ``hidden == "drop"``)
    decimated to ``max_faces`` (0 = as is)."""
    import jax.numpy as jnp  # noqa: PLC0415

    from fgpose import mesh as mesh_lib  # noqa: PLC0415
    from fgpose.refine import search  # noqa: PLC0415

    def decimated(k):  # decimate() leaves a mesh within its budget as it is
        return base_mesh if k == 0 else mesh_lib.decimate(base_mesh, k)

    t = time.perf_counter()
    m = decimated(max_faces)
    coarse_mesh = None  # the coarse pass gets its own, smaller mesh when the search mesh is larger
    if coarse > 1 and args.coarse_max_faces and m.num_faces > args.coarse_max_faces:
        c = decimated(args.coarse_max_faces)
        coarse_mesh = (c.vertices, c.faces, None)
    decimate_s = time.perf_counter() - t
    config = search.SearchConfig(schedule=schedule, max_sweeps=args.max_sweeps, coarse=coarse,
                                 coarse_alpha=args.coarse_alpha)
    n, b = len(starts), min(args.batch, len(starts))
    heights = np.full(b, FRAME_HEIGHT, np.int32)

    # Ahead-of-time compile with the arguments refine() passes, so the timed runs hit the cache.
    watch.start()
    t = time.perf_counter()
    compile_note = "aot"
    aot_coarse = None if coarse_mesh is None else (
        jnp.asarray(coarse_mesh[0], jnp.float32), jnp.asarray(coarse_mesh[1], jnp.int32), jnp.ones(len(coarse_mesh[1]), bool))
    try:
        search._search.lower(
            jnp.asarray(m.vertices, jnp.float32), jnp.asarray(m.faces, jnp.int32), jnp.ones(m.num_faces, bool),
            jnp.asarray(starts[:b], jnp.float32), jnp.asarray(heights, jnp.int32), jnp.asarray(refs[:b], bool),
            aot_coarse, config=config,
        ).compile()
    except (AttributeError, TypeError):  # search's internals changed: warm up with a full run instead
        compile_note = "warm-up run (compile + one batch)"
        search.refine(m.vertices, m.faces, starts[:b], refs[:b], heights, coarse_mesh=coarse_mesh, config=config)
    compile_s = time.perf_counter() - t
    watch.stop()

    out = {k: [] for k in ("poses", "iou", "initial_iou", "sweeps", "moves")}
    watch.start()
    cpu0 = time.process_time()
    t = time.perf_counter()
    for s in range(0, n, b):
        idx = np.arange(s, min(s + b, n))
        idx_p = np.concatenate([idx, np.repeat(idx[-1:], b - len(idx))])
        res = search.refine(m.vertices, m.faces, starts[idx_p], refs[idx_p], heights, coarse_mesh=coarse_mesh,
                            config=config)
        for k in out:
            out[k].append(np.asarray(getattr(res, k))[: len(idx)])
    seconds = time.perf_counter() - t
    cpu_s = time.process_time() - cpu0
    compile_in_timed, compiles_in_timed = watch.stop()
    out = {k: np.concatenate(v) for k, v in out.items()}
    iou_full = evaluate(out["poses"], refs)
    extra = {
        "cpu_s": cpu_s,
        "compile_s": compile_s,
        "compile_method": compile_note,
        "compile_s_inside_timing": compile_in_timed,
        "compiles_inside_timing": compiles_in_timed,
        "decimate_s": decimate_s,
        "padded_images": int(-n % b),
        "search_mean_iou": float(np.mean(out["iou"])),
        "per_image_iou": [float(x) for x in iou_full],
        "per_image_sweeps": [int(x) for x in out["sweeps"]],
    }
    if compile_in_timed > 0.5:  # tiny eager helper compiles (~0.1 s) on a first call are expected
        log(f"warning: {compiles_in_timed} compile(s) ({compile_in_timed:.1f} s) happened inside the timed region")
    coarse_faces = m.num_faces if coarse_mesh is None else len(coarse_mesh[1])
    label = schedule if coarse == 1 else (f"{schedule}, coarse {coarse} to alpha {args.coarse_alpha:g}"
                                          f" on {coarse_faces:,} faces")
    row = summary_row("jitted", label, "fgpose.raster", m.num_faces, n, b, seconds, out["sweeps"], iou_full,
                      out["initial_iou"], subset, {**extra, "coarse": coarse, "coarse_alpha": args.coarse_alpha,
                                                   "coarse_faces": coarse_faces if coarse > 1 else None,
                                                   "hidden_faces": "dropped" if hidden == "drop" else "kept"})
    return row


# ----------------------------------------------------------------------------- report


def markdown_table(rows, base) -> str:
    header = ["method", "schedule", "search mesh: faces", "images", "batch", "images/s", "s/image", "× baseline",
              "median sweeps", "median IoU", "mean IoU", "mean IoU, baseline's images", "median initial IoU",
              "compile s", "CPU s/image", "load"]

    def fmt(x):
        return "—" if x is None else f"{x:.4f}"
    cells = []
    for r in rows:
        ratio = r["images_per_s"] / base["images_per_s"] if base else float("nan")
        cells.append([
            f"{r['method']} ({r['renderer']})", r["schedule"],
            f"{r['search_faces']:,} {'visible' if r['hidden_faces'] == 'dropped' else 'of all'}", r["images"],
            r["batch"], f"{r['images_per_s']:.3f}", f"{r['s_per_image']:.3f}",
            "—" if base is None else f"{ratio:.2f}×", f"{r['median_sweeps']:.0f}", f"{r['median_iou']:.4f}",
            f"{r['mean_iou']:.4f}", fmt(r["mean_iou_baseline_images"]), f"{r['median_initial_iou']:.4f}",
            f"{r.get('compile_s', 0.0):.1f}", f"{r['cpu_s_per_image']:.3f}", f"{r['loadavg_1min_after']:.1f}",
        ])
    return common.markdown_table(header, cells, "lll" + "r" * 13)


def parse_int_list(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or any(v < 0 for v in vals):
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return vals


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--release-dir", help="finegrained_pose release root (default: $FGPOSE_RELEASE_DIR)")
    ap.add_argument("--images", type=int, default=None, help="images refined by the jitted search (default 85 = all)")
    ap.add_argument("--baseline-images", type=int, default=None,
                    help="images refined by the slow baseline, evenly spaced among --images (default 85 = all: the IoU comparison is then not at the mercy of a few images)")
    ap.add_argument("--batch", type=int, default=None, help="jitted batch size (default 85)")
    ap.add_argument("--schedules", default=None, help="jitted schedules, comma-separated (default paper)")
    ap.add_argument("--max-faces", type=parse_int_list, default=None,
                    help="search meshes: 0 = full, K = decimated to <= K faces (default 0,10000,7500,5000)")
    ap.add_argument("--hidden", default="drop",
                    help="mesh preparation, comma-separated: drop = only the faces a distant viewpoint sees "
                         "(the refine CLI's default), keep = all faces (default drop)")
    ap.add_argument("--max-sweeps", type=int, default=50, help="bound on sweeps per image (default 50)")
    ap.add_argument("--coarse", type=parse_int_list, default=None,
                    help="jitted coarse-to-fine factors, comma-separated; 1 = plain search (default 1,2)")
    ap.add_argument("--coarse-max-faces", type=int, default=5000,
                    help="mesh of the coarse pass: decimated to <= K faces when the search mesh is larger; "
                         "0 = the search mesh (default 5000)")
    ap.add_argument("--coarse-alpha", type=float, default=None,
                    help="alpha at which a coarse search hands over to the full frame (default: SearchConfig's)")
    ap.add_argument("--json", default="out/bench_refine.json", help="output JSON (default out/bench_refine.json)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 12 images, 2 baseline images, schedule paper, meshes 0,2000 (explicit options win)")
    args = ap.parse_args(argv)
    quick = dict(images=12, baseline_images=2, batch=12, schedules="paper", max_faces=[0, 2000], coarse=[1, 2])
    full = dict(images=85, baseline_images=85, batch=85, schedules="paper", max_faces=[0, 10000, 7500, 5000], coarse=[1, 2])
    for k, v in (quick if args.quick else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.coarse_alpha is None:
        from fgpose.refine.search import SearchConfig  # noqa: PLC0415

        args.coarse_alpha = SearchConfig.coarse_alpha

    root = common.resolve_release_dir(args.release_dir, DATASET)
    mesh_path = common.example_car_path(root)
    if not mesh_path.is_file():
        raise SystemExit(f"error: mesh {mesh_path} does not exist")

    from fgpose.refine import search  # noqa: PLC0415

    schedules = [s.strip() for s in args.schedules.split(",") if s.strip()]
    for s in schedules:
        if s not in search.SCHEDULES:
            raise SystemExit(f"error: unknown schedule {s!r}; choose from {search.SCHEDULES}")
    hidden_modes = [h.strip() for h in args.hidden.split(",") if h.strip()]
    if not hidden_modes or any(h not in ("drop", "keep") for h in hidden_modes):
        raise SystemExit(f"error: --hidden takes drop and/or keep, got {args.hidden!r}")
    if args.batch < 1 or args.images < 1 or args.baseline_images < 0 or args.max_sweeps < 1:
        raise SystemExit("error: --images, --batch and --max-sweeps must be >= 1, --baseline-images >= 0")

    import jax  # noqa: PLC0415

    from fgpose import mesh as mesh_lib  # noqa: PLC0415

    pairs = load_pairs(root)
    n = min(args.images, len(pairs))
    pairs = pairs[:n]
    m_base = min(args.baseline_images, n)
    subset = np.unique(np.linspace(0, n - 1, m_base).round().astype(int)) if m_base else np.zeros(0, int)
    starts = np.stack([p[2] for p in pairs])
    targets = np.stack([p[3] for p in pairs])
    load0 = os.getloadavg()
    log(f"{n} images ({sum(p[0] == 'train' for p in pairs)} train), baseline on {len(subset)}; "
        f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs, load {load0[0]:.2f}")

    full_mesh = mesh_lib.load_mesh(mesh_path, cache_dir=False)
    watch = CompileWatch()
    silhouettes, evaluate = make_iou_evaluator(full_mesh.vertices, full_mesh.faces, min(args.batch, n))
    t = time.perf_counter()
    refs = silhouettes(targets)
    log(f"references rendered in {time.perf_counter() - t:.1f} s (incl. compile); "
        f"start IoU median {np.median(evaluate(starts, refs)):.4f}")

    rows, base = [], None
    if len(subset):
        base, _ = run_baseline(args, full_mesh, starts, refs, subset, evaluate)
        rows.append(base)
        log(f"baseline: {base['s_per_image']:.2f} s/image, mean IoU {base['mean_iou']:.4f}")
    bases, visibility_s = {"keep": full_mesh}, None
    if "drop" in hidden_modes:
        from fgpose import visibility  # noqa: PLC0415

        t = time.perf_counter()
        bases["drop"] = visibility.drop_hidden_faces(full_mesh)
        visibility_s = time.perf_counter() - t
        log(f"visible faces: {bases['drop'].num_faces:,} of {full_mesh.num_faces:,} ({visibility_s:.1f} s incl. compile)")
    for schedule in schedules:
        for coarse in args.coarse:
            if coarse > 1 and schedule == "release":
                continue  # no alpha schedule to hand over
            for hidden in hidden_modes:
                for k in args.max_faces:
                    log(f"jitted {schedule}, coarse {coarse}, hidden faces {hidden}, "
                        f"{'all of them' if k == 0 else f'<= {k} faces'} ...")
                    row = run_jitted(args, bases[hidden], hidden, k, schedule, coarse, starts, refs, subset, evaluate,
                                     watch)
                    rows.append(row)
                    log(f"  {row['images_per_s']:.2f} images/s, compile {row['compile_s']:.1f} s, "
                        f"mean IoU {row['mean_iou']:.4f}")

    verdicts = []
    for r in rows:
        if base is None:
            r["speed_ratio"] = None
            continue
        r["speed_ratio"] = r["images_per_s"] / base["images_per_s"]
        r["cpu_time_ratio"] = base["cpu_s_per_image"] / r["cpu_s_per_image"]
        if r["method"] == "jitted":
            diff = np.asarray(r["per_image_iou"])[subset] - np.asarray(base["per_image_iou"])
            r["iou_diff_vs_baseline_mean"] = float(diff.mean())
            r["iou_diff_vs_baseline_se"] = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else None
            se = r["iou_diff_vs_baseline_se"]
            se_text = "" if se is None else f" ± {se:.5f}"
            r["iou_ok"] = bool(r["mean_iou_baseline_images"] >= base["mean_iou"] - IOU_TOLERANCE)
            r["meets_cpu_target"] = bool(r["speed_ratio"] >= SPEED_TARGET and r["iou_ok"])
            verdicts.append(
                f"- jitted {r['schedule']}, {r['search_faces']:,} faces ({r['hidden_faces']} hidden): "
                f"{r['speed_ratio']:.2f}× the baseline, "
                f"mean IoU on the baseline's images {r['mean_iou_baseline_images']:.4f} vs {base['mean_iou']:.4f} "
                f"(paired difference {r['iou_diff_vs_baseline_mean']:+.5f}{se_text}) "
                f"-> {'MEETS' if r['meets_cpu_target'] else 'misses'} the CPU target"
            )

    load1 = os.getloadavg()
    print()
    print(markdown_table(rows, base))
    print()
    if base is not None:
        print(f"Baseline timed on {base['images']} of the {n} images (per-image figures; pyrender/OSMesa, "
              f"{base['ms_per_render']:.2f} ms per render, median {base['renders_per_image_median']:.0f} renders/image). "
              f"Final IoU of every row re-evaluated with the full {full_mesh.num_faces:,}-face mesh.")
    print(f"Load average {load0[0]:.2f} at start, {load1[0]:.2f} at end ({os.cpu_count()} CPUs); `load` = 1-min load "
          "average after each row, `CPU s/image` = this process's CPU time (all threads) per image, "
          "less sensitive than wall time to other processes.")
    print()
    print("Targets:")
    for t_ in TARGETS:
        print(f"- {t_}")
    if verdicts:
        print()
        print(f"CPU target check (>= {SPEED_TARGET:.0f}× and mean IoU >= baseline - {IOU_TOLERANCE:g}):")
        print("\n".join(verdicts))

    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
        "args": {k: v for k, v in vars(args).items()},
        "machine": platform.platform(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "loadavg_start": load0,
        "loadavg_end": load1,
        "mesh": str(mesh_path),
        "mesh_faces": full_mesh.num_faces,
        "frame": [FRAME_HEIGHT, 300],
        "image_keys": [f"{p[0]}/{p[1]}" for p in pairs],
        "targets": list(TARGETS),
        "iou_tolerance": IOU_TOLERANCE,
        "visible_faces": bases["drop"].num_faces if "drop" in bases else None,
        "visibility_s": visibility_s,
    }
    common.write_json(args.json, {"meta": meta, "rows": rows}, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
