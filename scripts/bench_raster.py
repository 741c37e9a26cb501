#!/usr/bin/env python
"""Benchmark: fgpose's JAX rasterizer against pyrender (OpenGL) and a naive OpenCV loop.

Renders silhouettes and 3D location fields of the release's real ShapeNet car
(:data:`fgpose.annotations.EXAMPLE_CAR_MODEL_ID`, 29,226 triangles) at its real
annotated poses (the 85 StanfordCars v2 train+test annotations that use it, cycled to fill
a batch) with three methods in one process:

* ``fgpose``: :func:`fgpose.raster.render` on a batch of projections, jit-compiled (AOT:
  ``jax.jit(f).lower(...).compile()``), warmed up, then timed ``--repeats`` times with
  ``jax.block_until_ready``; the table reports the **median** (the JSON also has the best).
  Silhouette = ``silhouette_only=True``; location field = the full render (mask, depth,
  location, face id) with ``location=True``.
* ``pyrender``: :class:`fgpose.pyrender_backend.PyrenderRenderer` (OSMesa unless
  ``PYOPENGL_PLATFORM`` says otherwise), one pose at a time with one reused renderer.
  Silhouette = ``render_depth > 0``; location field = ``render_depth`` then NumPy
  back-projection of every foreground pixel to model space. Its location field is checked
  (assert) against fgpose's on the pixels both cover.
* ``opencv``: vertices projected in NumPy, one ``cv2.fillConvexPoly`` per triangle in a
  Python loop. Silhouette = fill 1s; location field = painter's algorithm (triangles sorted
  far to near by mean depth, each filling its index into an int32 image) then per-pixel
  perspective-correct barycentrics -> model XYZ in NumPy.

pyrender and OpenCV do not batch: their batch-B time is B single renders done in a loop
(the same poses as fgpose's batch), timed per batch size. For batches larger than
``--opencv-max-poses`` the OpenCV loop renders only the first that many poses and the
per-render time is extrapolated (marked in the table and the JSON).

Peak memory of fgpose at the largest batch: XLA's compiled memory analysis (temp + argument
+ output bytes) and the process's peak-RSS increase (``ru_maxrss``) around compile + run,
each configuration in a fresh subprocess.

The annotation frame of the release depends on each photo's aspect ratio; here every pose
is rendered in a fixed ``--height x --width`` frame (default 200 x 300, i.e. the release's
width-300 frame with ``v' = v + 100``); a ``--width`` other than 300 resizes that frame.

Usage::

    FGPOSE_RELEASE_DIR=../shared/finegrained_pose python scripts/bench_raster.py
    python scripts/bench_raster.py --release-dir ../shared/finegrained_pose --quick
    python scripts/bench_raster.py --methods fgpose,pyrender --batches 1,64 --repeats 10
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

import _bench_common as common

ANNO_DATASET = common.EXAMPLE_DATASET
METHODS = ("fgpose", "pyrender", "opencv")
OUTPUTS = ("silhouette", "location")
_CHILD_MARKER = "BENCH_RASTER_MEMORY_JSON:"
_ANNOTATION_WIDTH = 300

# Agreement check between pyrender's back-projected location field and fgpose's: on pixels
# both cover, the bulk must agree to ~1e-3 model units (the two differ only along occlusion
# edges and silhouette boundaries, where the two rasterizers may pick different faces).
_LOC_TOL = 1e-3
_LOC_MIN_FRACTION = 0.97
_MIN_MASK_IOU = 0.99


# ----------------------------------------------------------------------------- data


def load_poses(root: pathlib.Path) -> list[tuple[str, str, dict]]:
    """``(split, key, {pose field: value})`` of the v2 StanfordCars annotations of the car, sorted."""
    from fgpose import camera  # noqa: PLC0415

    return [(split, a.key, {k: getattr(a, k) for k in camera.POSE_FIELDS})
            for split, a in common.example_car_annotations(root, 2)]


def load_mesh(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    from fgpose import mesh  # noqa: PLC0415

    try:
        m = mesh.load_mesh(path)
    except (OSError, ValueError) as err:
        raise SystemExit(f"error: {err} (--mesh)") from None
    return m.vertices, m.faces


def camera_arrays(records: list[dict], height: int, width: int):
    """Per pose: projection ``(N, 3, 4)``, rotation ``(N, 3, 3)``, distance ``(N,)``, image K ``(N, 3, 3)``.

    The annotation frame is taken as ``height x 300`` (the photos' true aspect ratios are not
    used) and resized to ``height x width``.
    """
    from fgpose import camera  # noqa: PLC0415

    pose = camera.Pose.stack([camera.Pose.from_mapping(r) for r in records])
    frame_h = height * _ANNOTATION_WIDTH / width  # width 300 -> frame_h == height
    resize = np.asarray(camera.frame_transform((frame_h, _ANNOTATION_WIDTH), (height, width)), np.float64)
    k_frame = np.asarray(camera.intrinsics(pose, frame_h), np.float64)
    k_img = resize @ k_frame
    rot = np.asarray(pose.rotation(), np.float64)
    dist = np.asarray([r["distance"] for r in records], np.float64)
    ext = np.concatenate([rot, np.stack([0 * dist, 0 * dist, -dist], -1)[..., None]], -1)
    proj = (k_img @ ext).astype(np.float32)
    return proj, rot, dist, k_img


def cycle(n: int, total: int) -> np.ndarray:
    return np.arange(n) % total


# ----------------------------------------------------------------------------- methods


def fgpose_fn(output: str, height: int, width: int, tile: int, block: int):
    from fgpose import raster  # noqa: PLC0415

    if output == "silhouette":
        def f(v, fa, p):
            return raster.render(v, fa, p, height, width, silhouette_only=True, tile=tile, block=block).mask
    else:
        def f(v, fa, p):
            return raster.render(v, fa, p, height, width, location=True, tile=tile, block=block)
    return f


def memory_analysis_dict(compiled) -> dict:
    ma = compiled.memory_analysis()
    if ma is None:
        return {}
    keys = ("temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes",
            "alias_size_in_bytes", "generated_code_size_in_bytes")
    d = {k: int(getattr(ma, k, 0) or 0) for k in keys}
    d["total_bytes"] = d["temp_size_in_bytes"] + d["argument_size_in_bytes"] + d["output_size_in_bytes"] - d["alias_size_in_bytes"]
    d["total_mb"] = d["total_bytes"] / 2**20
    return d


def pyrender_location(depth: np.ndarray, k: np.ndarray, rot: np.ndarray, distance: float) -> np.ndarray:
    """Back-projects pyrender's depth to model-space XYZ ``(H, W, 3)`` (0 off the mask)."""
    ii, jj = np.nonzero(depth > 0)
    z = depth[ii, jj].astype(np.float64)
    x, y = jj + 0.5, ii + 0.5
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    # pyrender's (mirrored) camera: x = cx - fx Xg/Zg, y = cy + fy Yg/Zg, visible Zg = -depth.
    zg = -z
    xg = (cx - x) * zg / fx
    yg = (y - cy) * zg / fy
    # Undo the mirroring (Xc = -Xg) to get the release's camera point, then
    # X_model = R^T (Xc + (0, 0, d)); as row vectors that is (Xc + t) @ R.
    xc = np.stack([-xg, yg, zg + distance], -1)
    loc = np.zeros(depth.shape + (3,), np.float32)
    loc[ii, jj] = xc @ rot
    return loc


class OpenCVRenderer:
    """The naive baseline: one ``cv2.fillConvexPoly`` per triangle in a Python loop."""

    SHIFT = 4  # sub-pixel bits for fillConvexPoly

    def __init__(self, height: int, width: int):
        import cv2  # noqa: PLC0415

        self.cv2 = cv2
        self.height, self.width = height, width

    def _project(self, vertices, faces, projection):
        h = vertices.astype(np.float64) @ projection[:, :3].T.astype(np.float64) + projection[:, 3]
        xy = h[:, :2] / h[:, 2:3]
        # Pixel (i, j) covers [j, j+1) x [i, i+1): OpenCV fills integer points, so move the
        # pixel centres (j + .5, i + .5) onto integers, in 1/16 pixel fixed point.
        pts = np.round((xy - 0.5) * (1 << self.SHIFT)).astype(np.int32)
        return h, pts[faces]  # (V, 3) homogeneous, (F, 3, 2)

    def silhouette(self, vertices, faces, projection) -> np.ndarray:
        _, tri_pts = self._project(vertices, faces, projection)
        img = np.zeros((self.height, self.width), np.uint8)
        fill = self.cv2.fillConvexPoly
        for tri in tri_pts:
            fill(img, tri, 1, lineType=self.cv2.LINE_8, shift=self.SHIFT)
        return img > 0

    def location(self, vertices, faces, projection) -> tuple[np.ndarray, np.ndarray]:
        h, tri_pts = self._project(vertices, faces, projection)
        depth = -h[:, 2]
        order = np.argsort(-depth[faces].mean(axis=1), kind="stable")  # far -> near
        ids = np.full((self.height, self.width), -1, np.int32)
        fill = self.cv2.fillConvexPoly
        for t in order:
            fill(ids, tri_pts[t], int(t), lineType=self.cv2.LINE_8, shift=self.SHIFT)
        ii, jj = np.nonzero(ids >= 0)
        f = faces[ids[ii, jj]]  # (N, 3) vertex ids
        c = -h[f]  # (N, 3 verts, 3) homogeneous (x_h, y_h, w): columns of M
        adj = np.stack([np.cross(c[:, 1], c[:, 2]), np.cross(c[:, 2], c[:, 0]), np.cross(c[:, 0], c[:, 1])], 1)
        p = np.stack([jj + 0.5, ii + 0.5, np.ones_like(ii, np.float64)], -1)
        alpha = np.einsum("nij,nj->ni", adj, p)
        bary = alpha / alpha.sum(-1, keepdims=True)  # perspective-correct, det cancels
        loc = np.zeros((self.height, self.width, 3), np.float32)
        loc[ii, jj] = np.einsum("ni,nij->nj", bary, vertices[f].astype(np.float64))
        return ids >= 0, loc


# ----------------------------------------------------------------------------- memory child


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _proc_status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def memory_child(args) -> None:
    """Runs one fgpose config at one batch size and prints its memory numbers as JSON.

    The parent hands over the mesh and projections as an ``.npz`` so that this process
    parses no OBJ. Peaks are read from ``VmHWM`` (the peak resident set of this process's own
    address space), reset through ``/proc/self/clear_refs`` before the compile and again
    before the run, so each phase's own peak is measured. ``ru_maxrss`` is recorded as well
    but is not used: on Linux it keeps the parent's peak across fork + exec.
    """
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    with np.load(args.memory_inputs) as data:
        v, fa, p = (jnp.asarray(data[k]) for k in ("vertices", "faces", "projection"))
    jax.block_until_ready((v, fa, p))
    f = fgpose_fn(args.memory_output, args.height, args.width, args.tile, args.block)
    maxrss0 = _maxrss_mb()
    reset_ok = _reset_peak_rss()
    rss0 = _proc_status_mb("VmRSS")
    compiled = jax.jit(f).lower(v, fa, p).compile()
    hwm_compile = _proc_status_mb("VmHWM")
    rss_before_run = _proc_status_mb("VmRSS")
    reset_ok &= _reset_peak_rss()
    jax.block_until_ready(compiled(v, fa, p))
    jax.block_until_ready(compiled(v, fa, p))
    hwm_run = _proc_status_mb("VmHWM")
    result = {
        "output": args.memory_output,
        "batch": int(p.shape[0]),
        "xla": memory_analysis_dict(compiled),
        "source": "VmHWM with clear_refs resets" if reset_ok else "VmHWM (peak could not be reset)",
        "peak_reset_ok": reset_ok,
        "rss_before_compile_mb": rss0,
        "peak_rss_compile_mb": hwm_compile,
        "rss_before_run_mb": rss_before_run,
        "peak_rss_run_mb": hwm_run,
        "rss_after_run_mb": _proc_status_mb("VmRSS"),
        # Peak RSS over compile + two executions, minus the RSS just before compiling.
        "peak_rss_increase_mb": max(hwm_compile, hwm_run) - rss0,
        "peak_rss_increase_compile_mb": hwm_compile - rss0,
        # Execution alone: peak during the runs minus the RSS just before them.
        "peak_rss_increase_run_mb": (hwm_run - rss_before_run) if reset_ok else None,
        "ru_maxrss_before_mb": maxrss0,
        "ru_maxrss_after_mb": _maxrss_mb(),
    }
    print(_CHILD_MARKER + json.dumps(result), flush=True)


def measure_memory_subprocess(args, output: str, vertices, faces, projection) -> dict:
    import tempfile  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        inputs = os.path.join(tmp, "inputs.npz")
        np.savez(inputs, vertices=vertices, faces=faces, projection=projection)
        cmd = [sys.executable, os.path.abspath(__file__), "--_memory-child", output, "--_memory-inputs", inputs,
               "--height", str(args.height), "--width", str(args.width), "--tile", str(args.tile),
               "--block", str(args.block)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    for line in proc.stdout.splitlines():
        if line.startswith(_CHILD_MARKER):
            return json.loads(line[len(_CHILD_MARKER):])
    raise RuntimeError(f"memory subprocess failed (rc {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


# ----------------------------------------------------------------------------- benchmark


def _row(method, output, batch, times, renders_per_timing, extra=None):
    """``times``: seconds for ``renders_per_timing`` renders each (one per repeat)."""
    med = statistics.median(times)
    best = min(times)
    per_render = med / renders_per_timing
    row = {
        "method": method,
        "output": output,
        "batch": batch,
        "repeats": len(times),
        "timed_renders": renders_per_timing,
        "statistic": "median",
        "renders_per_s": 1.0 / per_render,
        "ms_per_render": 1e3 * per_render,
        "best_renders_per_s": renders_per_timing / best,
        "best_ms_per_render": 1e3 * best / renders_per_timing,
        "batch_seconds_median": per_render * batch,
        "times_s": times,
        "extrapolated": renders_per_timing != batch,
    }
    row.update(extra or {})
    return row


def bench_fgpose(args, vertices, faces, proj, n_poses, log):
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    rows, fields = [], {}
    v, fa = jnp.asarray(vertices), jnp.asarray(faces)
    for output in OUTPUTS:
        f = fgpose_fn(output, args.height, args.width, args.tile, args.block)
        for b in args.batches:
            p = jnp.asarray(proj[cycle(b, n_poses)])
            jax.block_until_ready((v, fa, p))
            t0 = time.perf_counter()
            compiled = jax.jit(f).lower(v, fa, p).compile()
            compile_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            out = jax.block_until_ready(compiled(v, fa, p))  # warm-up
            first_s = time.perf_counter() - t0
            times = common.timed_calls(lambda: compiled(v, fa, p), args.repeats)
            row = _row("fgpose", output, b, times, b, {
                "compile_s": compile_s, "first_call_s": first_s, "xla_memory": memory_analysis_dict(compiled)})
            rows.append(row)
            log(f"fgpose {output:10s} batch {b:3d}: {row['renders_per_s']:9.1f} renders/s "
                f"(compile {compile_s:.2f} s, XLA {row['xla_memory'].get('total_mb', float('nan')):.0f} MB)")
            if b == max(args.batches):
                if output == "location":
                    fields[output] = {"mask": np.asarray(out.mask), "location": np.asarray(out.location)}
    return rows, fields


def _tqdm(iterable, desc, total, enabled):
    from tqdm.auto import tqdm  # noqa: PLC0415

    return tqdm(iterable, desc=desc, total=total, leave=False, disable=not enabled, file=sys.stderr, dynamic_ncols=True)


def bench_pyrender(args, vertices, faces, rot, dist, kimg, n_poses, ref, log):
    from fgpose.pyrender_backend import PyrenderRenderer, ensure_headless  # noqa: PLC0415

    platform_name = ensure_headless()
    info = {"pyopengl_platform": platform_name}
    with PyrenderRenderer(args.height, args.width) as pr:
        pr.set_mesh(vertices, faces)  # uploaded once; only the camera moves per render

        def render_sil(i):
            return pr.render_depth(rot[i], dist[i], kimg[i]) > 0

        def render_loc(i):
            d = pr.render_depth(rot[i], dist[i], kimg[i])
            return d > 0, pyrender_location(d, kimg[i], rot[i], dist[i])

        render_sil(0)  # warm-up: context, shaders
        try:
            from OpenGL import GL  # noqa: PLC0415

            info["gl_renderer"] = GL.glGetString(GL.GL_RENDERER).decode()
            info["gl_version"] = GL.glGetString(GL.GL_VERSION).decode()
        except Exception as exc:  # noqa: BLE001 - informational only
            info["gl_renderer"] = f"unavailable ({type(exc).__name__})"
        info["agreement"] = check_agreement("pyrender", render_loc, ref, n_poses, args, strict=True, log=log)
        rows = _time_one_at_a_time("pyrender", render_sil, render_loc, n_poses, args, log, max_poses=0)
    return rows, info


def bench_opencv(args, vertices, faces, proj, n_poses, ref, log):
    cv = OpenCVRenderer(args.height, args.width)

    def render_sil(i):
        return cv.silhouette(vertices, faces, proj[i])

    def render_loc(i):
        return cv.location(vertices, faces, proj[i])

    info = {"agreement": check_agreement("opencv", render_loc, ref, n_poses, args, strict=False, log=log),
            "max_poses": args.opencv_max_poses}
    rows = _time_one_at_a_time("opencv", render_sil, render_loc, n_poses, args, log, max_poses=args.opencv_max_poses)
    return rows, info


def _time_one_at_a_time(method, render_sil, render_loc, n_poses, args, log, max_poses):
    """Times a non-batching baseline: batch B = B single renders (the first `max_poses` of
    them when max_poses > 0, extrapolated per render)."""
    rows = []
    for output, fn in (("silhouette", render_sil), ("location", render_loc)):
        for b in args.batches:
            n = b if max_poses <= 0 else min(b, max_poses)
            idx = cycle(n, n_poses)
            times = []
            for r in range(args.baseline_repeats):
                t0 = time.perf_counter()
                for i in _tqdm(idx, f"{method} {output} b{b} r{r + 1}", len(idx), args.progress):
                    fn(i)
                times.append(time.perf_counter() - t0)
            row = _row(method, output, b, times, n)
            rows.append(row)
            note = f" (timed {n} poses, extrapolated)" if n != b else ""
            log(f"{method:8s} {output:10s} batch {b:3d}: {row['renders_per_s']:9.1f} renders/s{note}")
    return rows


def check_agreement(name, render_loc, ref, n_poses, args, strict, log):
    """Compares a method's (mask, location) with fgpose's full render on the first poses."""
    if ref is None:
        return None
    n = min(args.check_poses, ref["mask"].shape[0], n_poses)
    ious, fractions, medians, p99s = [], [], [], []
    for i in range(n):
        mask, loc = render_loc(i)
        rm, rl = ref["mask"][i], ref["location"][i]
        both = mask & rm
        union = (mask | rm).sum()
        ious.append(float(both.sum() / max(union, 1)))
        err = np.abs(loc[both] - rl[both]).max(axis=-1)
        fractions.append(float(np.mean(err < _LOC_TOL)) if err.size else 1.0)
        medians.append(float(np.median(err)) if err.size else 0.0)
        p99s.append(float(np.quantile(err, 0.99)) if err.size else 0.0)
    res = {
        "poses_checked": n,
        "mask_iou_min": min(ious),
        "loc_tol": _LOC_TOL,
        "loc_fraction_within_tol_min": min(fractions),
        "loc_median_abs_err_max": max(medians),
        "loc_p99_abs_err_max": max(p99s),
    }
    log(f"{name} vs fgpose on {n} poses: mask IoU >= {res['mask_iou_min']:.5f}; location |err| < {_LOC_TOL:g} on "
        f">= {100 * res['loc_fraction_within_tol_min']:.2f}% of common pixels (median err <= {res['loc_median_abs_err_max']:.2e})")
    if strict:
        assert res["mask_iou_min"] >= _MIN_MASK_IOU, f"{name} silhouette disagrees with fgpose: {res}"
        assert res["loc_fraction_within_tol_min"] >= _LOC_MIN_FRACTION, f"{name} location field disagrees with fgpose: {res}"
        assert res["loc_median_abs_err_max"] < _LOC_TOL, f"{name} location field disagrees with fgpose: {res}"
    return res


# ----------------------------------------------------------------------------- report


def _fmt_rate(x):
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def markdown_table(rows, memory) -> str:
    ref = {(r["output"], r["batch"]): r["renders_per_s"] for r in rows if r["method"] == "pyrender"}
    cells = []
    for r in rows:
        base = ref.get((r["output"], r["batch"]))
        ratio = f"{r['renders_per_s'] / base:.2f}×" if base else "—"
        peak = "—"
        if r["method"] == "fgpose":
            xla = r.get("xla_memory", {}).get("total_mb")
            mem = memory.get((r["output"], r["batch"]))
            parts = []
            if xla is not None:
                parts.append(f"XLA {xla:.0f}")
            if mem:
                run = mem.get("peak_rss_increase_run_mb")
                parts.append(f"RSS +{mem['peak_rss_increase_mb']:.0f}" + (f" (run +{run:.0f})" if run is not None else ""))
            peak = " / ".join(parts) or "—"
        rate = _fmt_rate(r["renders_per_s"])
        if r["extrapolated"]:
            rate += f" (†{r['timed_renders']})"
        cells.append([r["method"], r["output"], r["batch"], rate, f"{r['ms_per_render']:.2f}", ratio, peak])
    return common.markdown_table(["method", "output", "batch", "renders/s", "ms/render", "× pyrender", "peak MB"],
                                cells, "lllrrrl")


def targets(rows, memory, device_platform) -> list[dict]:
    get = {(r["method"], r["output"], r["batch"]): r["renders_per_s"] for r in rows}
    batches = sorted({r["batch"] for r in rows})
    out = []

    def ratios(output):
        return {b: get[("fgpose", output, b)] / get[("pyrender", output, b)]
                for b in batches if ("fgpose", output, b) in get and ("pyrender", output, b) in get}

    sil = {b: x for b, x in ratios("silhouette").items() if b > 1} or ratios("silhouette")
    if sil:
        worst = min(sil.values())
        out.append({"target": "batched silhouettes ≥ 3× pyrender's throughput",
                    "measured": ", ".join(f"batch {b}: {x:.2f}×" for b, x in sil.items()), "met": worst >= 3.0})
    loc = ratios("location")
    if loc:
        out.append({"target": "location fields ≥ pyrender's",
                    "measured": ", ".join(f"batch {b}: {x:.2f}×" for b, x in loc.items()), "met": min(loc.values()) >= 1.0})
    if memory:
        worst_b = max(b for _, b in memory)
        parts, ok = [], True
        for (output, b), m in sorted(memory.items()):
            xla = m["xla"].get("total_mb", float("nan"))
            rss = m["peak_rss_increase_mb"]
            parts.append(f"{output}: XLA {xla:.0f} MB, peak RSS +{rss:.0f} MB")
            ok &= max(xla, rss) < 2048
        out.append({"target": f"peak memory for batch {worst_b} < 2 GB", "measured": "; ".join(parts), "met": ok})
    sil_rates = [get[k] for k in get if k[0] == "fgpose" and k[1] == "silhouette"]
    if device_platform == "gpu":
        best = max(sil_rates) if sil_rates else float("nan")
        out.append({"target": "H100: ≥ 20,000 silhouettes/s", "measured": f"{best:,.0f} silhouettes/s on this GPU "
                    f"(largest batch {max(batches)})", "met": best >= 20000})
    else:
        out.append({"target": "H100: ≥ 20,000 silhouettes/s", "measured": "not measured here (no GPU)", "met": None})
    return out


def environment(args) -> dict:
    import jax  # noqa: PLC0415
    import jaxlib  # noqa: PLC0415

    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "jax_backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "devices": [str(d) for d in jax.devices()],
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "loadavg_start": list(os.getloadavg()),
    }
    try:
        with open("/proc/cpuinfo") as fh:
            env["cpu_model"] = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), None)
    except OSError:
        pass
    # Distribution metadata, not imports: importing OpenGL here would fix its platform
    # before pyrender_backend chooses a headless one.
    from importlib import metadata  # noqa: PLC0415

    for dist in ("opencv-python-headless", "opencv-python", "pyrender", "PyOpenGL", "trimesh", "tqdm"):
        try:
            env[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    env["pyopengl_platform_env"] = os.environ.get("PYOPENGL_PLATFORM")
    return env


# ----------------------------------------------------------------------------- main


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--release-dir", default=None, help="finegrained_pose release root (default: $FGPOSE_RELEASE_DIR)")
    ap.add_argument("--mesh", default=None,
                    help="mesh to render (default: the release's car, <release>/CAD/02958343/<its id>/model.obj)")
    ap.add_argument("--batches", default=None, help="comma-separated batch sizes (default 1,14,64; --quick: 1,2)")
    ap.add_argument("--repeats", type=int, default=7, help="timed repetitions for fgpose after warm-up (default 7)")
    ap.add_argument("--baseline-repeats", type=int, default=3, help="timed repetitions for pyrender/opencv (default 3)")
    ap.add_argument("--opencv-max-poses", type=int, default=16,
                    help="OpenCV renders at most this many poses per timing and extrapolates (0: all; default 16)")
    ap.add_argument("--check-poses", type=int, default=8, help="poses compared against fgpose (default 8)")
    ap.add_argument("--height", type=int, default=200)
    ap.add_argument("--width", type=int, default=300)
    ap.add_argument("--tile", type=int, default=8, help="fgpose raster tile (default 8)")
    ap.add_argument("--block", type=int, default=16384, help="fgpose raster block (default 16384)")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of fgpose,pyrender,opencv")
    ap.add_argument("--json", default="out/bench_raster.json", help="output JSON path ('' to skip)")
    ap.add_argument("--no-memory", action="store_true", help="skip the fgpose peak-memory subprocesses")
    ap.add_argument("--no-progress", dest="progress", action="store_false", help="no tqdm progress bars")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: batches 1,2 (unless --batches), one repeat, 2 OpenCV poses, 1 checked pose")
    ap.add_argument("--_memory-child", dest="memory_output", choices=OUTPUTS, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_memory-inputs", dest="memory_inputs", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.batches is None:
        args.batches = "1,2" if args.quick else "1,14,64"
    if args.quick:
        args.repeats = 1
        args.baseline_repeats = 1
        args.opencv_max_poses = 2
        args.check_poses = 1
    try:
        args.batches = sorted({int(b) for b in args.batches.split(",") if b.strip()})
    except ValueError:
        ap.error(f"--batches must be comma-separated integers, got {args.batches!r}")
    if not args.batches or min(args.batches) < 1:
        ap.error("--batches must be positive integers")
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(args.methods) - set(METHODS)
    if unknown or not args.methods:
        ap.error(f"--methods: unknown {sorted(unknown)}; choose from {','.join(METHODS)}")
    if args.repeats < 1 or args.baseline_repeats < 1:
        ap.error("--repeats and --baseline-repeats must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.memory_output:
        if not args.memory_inputs:
            raise SystemExit("error: --_memory-child needs --_memory-inputs")
        memory_child(args)
        return 0

    log = common.log
    root = common.resolve_release_dir(args.release_dir, ANNO_DATASET)
    mesh_path = pathlib.Path(args.mesh) if args.mesh else common.example_car_path(root)
    vertices, faces = load_mesh(mesh_path)
    poses = load_poses(root)
    records = [r for _, _, r in poses]
    n_poses = len(records)
    proj, rot, dist, kimg = camera_arrays(records, args.height, args.width)
    env = environment(args)
    log(f"mesh {mesh_path}: {len(vertices)} vertices, {len(faces)} triangles; {n_poses} poses "
        f"({sum(s == 'train' for s, _, _ in poses)} train, {sum(s == 'test' for s, _, _ in poses)} test); "
        f"{args.height}x{args.width}; jax {env['jax']} on {env['device_kind']}, {env['cpu_count']} CPUs")

    rows, ref, info = [], None, {}
    t_start = time.perf_counter()
    if "fgpose" in args.methods:
        r, fields = bench_fgpose(args, vertices, faces, proj, n_poses, log)
        rows += r
        ref = fields.get("location")
    if "pyrender" in args.methods:
        r, info["pyrender"] = bench_pyrender(args, vertices, faces, rot, dist, kimg, n_poses, ref, log)
        rows += r
    if "opencv" in args.methods:
        r, info["opencv"] = bench_opencv(args, vertices, faces, proj, n_poses, ref, log)
        rows += r

    memory = {}
    if "fgpose" in args.methods and not args.no_memory:
        b = max(args.batches)
        for output in OUTPUTS:
            log(f"fgpose {output} batch {b}: memory in a fresh subprocess ...")
            memory[(output, b)] = measure_memory_subprocess(args, output, vertices, faces, proj[cycle(b, n_poses)])

    base = {(r["output"], r["batch"]): r["renders_per_s"] for r in rows if r["method"] == "pyrender"}
    for r in rows:
        x = base.get((r["output"], r["batch"]))
        r["ratio_to_pyrender"] = r["renders_per_s"] / x if x else None
    env["loadavg_end"] = list(os.getloadavg())
    env["bench_seconds"] = time.perf_counter() - t_start

    table = markdown_table(rows, memory)
    tgts = targets(rows, memory, env["jax_backend"])
    print()
    print(f"Raster benchmark: {mesh_path.name} ({len(faces):,} triangles), {args.height}×{args.width}, "
          f"{n_poses} real poses cycled; {env['device_kind']} ({env['jax_backend']}), {env['cpu_count']} CPUs, "
          f"jax {env['jax']}, {env['date']}")
    print(f"fgpose: median of {args.repeats} after compile + warm-up; pyrender/opencv: median of "
          f"{args.baseline_repeats}, one pose at a time (batch B = B single renders)"
          + ("; † = OpenCV timed on the first N poses and extrapolated per render" if any(r["extrapolated"] for r in rows) else "")
          + ". peak MB: XLA memory analysis (temp+arg+out) / peak RSS increase over compile + run in a "
          "fresh process (run: execution alone).")
    print()
    print(table)
    print()
    print(common.markdown_table(["target", "measured", "met"], [
        [t["target"], t["measured"], "n/a" if t["met"] is None else ("yes" if t["met"] else "NO")] for t in tgts]))
    print(f"\nload average start {env['loadavg_start'][0]:.2f}, end {env['loadavg_end'][0]:.2f} "
          f"(1 min); total {env['bench_seconds']:.0f} s")

    if args.json:
        from fgpose.annotations import EXAMPLE_CAR_MODEL_ID  # noqa: PLC0415

        payload = {
            "environment": env,
            "config": {
                "mesh": str(mesh_path), "num_vertices": int(len(vertices)), "num_triangles": int(len(faces)),
                "model_id": EXAMPLE_CAR_MODEL_ID, "num_poses": n_poses, "pose_source": f"{ANNO_DATASET} v2 train+test",
                "height": args.height, "width": args.width, "batches": args.batches, "repeats": args.repeats,
                "baseline_repeats": args.baseline_repeats, "opencv_max_poses": args.opencv_max_poses,
                "tile": args.tile, "block": args.block, "methods": args.methods, "quick": args.quick,
                "statistic": "median (best also recorded)",
                "baseline_note": "pyrender/opencv render one pose at a time; batch B = B single renders "
                                 "(opencv: first opencv_max_poses poses, extrapolated per render)",
            },
            "rows": rows,
            "memory": [dict(v, output=k[0], batch=k[1]) for k, v in memory.items()],
            "methods_info": info,
            "targets": tgts,
        }
        common.write_json(args.json, payload, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
