"""Command line: refine release annotations against segmentation masks (Algorithm 1).

Example (StanfordCars train, v1 annotations, masks from any segmentation model)::

    R=$FGPOSE_RELEASE_DIR
    python -m fgpose.refine --annotations $R/Anno3D/StanfordCars/train_anno.pkl \\
        --images $R/Image/StanfordCars/cars_train --masks masks/cars_train --cad $R/CAD \\
        --out out/train_anno_refined.pkl --json out/train_refined.json --overlays out/overlays

Inputs, for every key of ``--annotations`` (a release pickle, read safely):

* photo: ``<images>/<key>`` (``--images`` is the directory the keys are relative to, e.g.
  ``Image/StanfordCars/cars_train``, ``Image/FGVC_Aircraft`` or ``Image/CompCars/image``).
  Only its header is read, for its size ``W x H``: the annotation frame is
  ``300 x int(H * 300 / W)``.
* mask: ``<masks>/<key with its extension replaced by .png>`` (e.g. ``00001.png``,
  ``make/model/year/hash.png``), any resolution covering the whole photo, nonzero =
  foreground (palette PNGs: nonzero index; colour PNGs: any nonzero colour channel). It is
  resized to the annotation frame with nearest neighbour (:func:`search.to_annotation_frame`).
* mesh: ``<cad>/<synset>/<model_id>/model.obj`` (ShapeNet layout; the synset is
  ``--dataset``'s, or, without ``--dataset``, the first of the cars/airplanes synsets that
  has the model), else ``<cad>/<model_id>/model.obj``. Each model is loaded once through the
  mesh cache (``$FGPOSE_CACHE_DIR`` or ``~/.cache/fgpose/meshes``), without the faces no
  distant viewpoint sees (:mod:`fgpose.visibility`: they never change a silhouette; about
  2 s per model the first time; ``--keep-hidden-faces`` keeps them), and decimated to
  ``--max-faces`` if given.

Images whose photo, mask or mesh is missing or unreadable (or whose mask is empty) are
skipped and listed in the summary; they keep their original annotation in ``--out``.

Batching: images are processed in order of (model id, frame height) so that a model's
images share batches; each batch of ``--batch-size`` images is one jitted search call, with
the meshes padded by :func:`fgpose.mesh.pack_meshes` and the reference masks padded to a
common height. To bound recompilation, batch shapes are rounded up: the batch is filled to
``--batch-size`` (repeating an image whose result is dropped), heights to a multiple of 16
rows, face and vertex counts to 8 steps per octave.

Output: ``--out`` is a pickle in the release's own format (:func:`save_annotations`; same
keys, in the same order, as the input), readable by the release's tools and
:func:`fgpose.annotations.load_annotations`. ``--json`` also writes the summary and, per
image, the poses before and after, IoUs, sweeps and moves, and the skip reasons.
``--overlays DIR`` writes ``DIR/<key with .png>`` per refined image: the photo resized to
``--overlay-width`` (default 600; height ``int(H * width / W)``) with the reference mask
tinted blue, the v1 silhouette outlined in red, the refined one in green and both IoUs.

Resume: after every batch, its results are appended as one line to
``<out>.partial.jsonl`` (one ``write`` of a complete line, flushed and fsynced; a torn last
line is discarded on reading). Rerunning the same command after an interruption (Ctrl-C,
kill) skips the images already in that file and recomputes nothing; at the end ``--out``
is written and the partial file removed. The partial file records the search settings and
the input file; a rerun with other settings stops with an error unless ``--restart`` is
given (which discards it). Images whose input record changed since are recomputed.

Device: ``--device cpu`` forces the CPU (same as ``JAX_PLATFORMS=cpu``), ``gpu`` requires a
GPU, ``default`` leaves JAX's choice (GPU when present).

Exit status: 0 when done, 1 when no image could be refined, 2 on bad arguments or
unreadable inputs (annotation file, partial file), 130 when interrupted (progress kept).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import math
import os
import pathlib
import sys
import time
from typing import Iterator

import numpy as np
from PIL import Image
from tqdm import tqdm

from fgpose import annotations as anno_lib
from fgpose import camera
from fgpose import mesh as mesh_lib
from fgpose import raster, viz
from fgpose.refine import search

PARTIAL_SUFFIX = ".partial.jsonl"
PARTIAL_FORMAT = "fgpose.refine.partial/1"
HEIGHT_MULTIPLE = 16
MESH_LRU = 8

SKIP_REASONS = ("bad key", "photo missing", "photo unreadable", "mask missing", "mask unreadable", "mask empty",
                "mesh missing", "mesh unreadable")
UNITS = {"azimuth": "deg", "elevation": "deg", "theta": "deg", "distance": "model units", "f": "px", "u": "px",
         "v": "px"}
ANGLES = ("azimuth", "elevation", "theta")


# ----------------------------------------------------------------------------- arguments


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fgpose.refine",
        description="Refine 3D pose annotations by a greedy search maximising the IoU between the CAD "
                    "silhouette and a segmentation mask (Algorithm 1 of Wang et al. 2018).",
        epilog="Paths: photo = IMAGES/<key>; mask = MASKS/<key with .png>; mesh = CAD/<synset>/<model_id>/model.obj "
               "or CAD/<model_id>/model.obj. Progress is kept in <out>.partial.jsonl: rerun the same command to resume.",
    )
    io = p.add_argument_group("inputs and outputs")
    io.add_argument("--annotations", type=pathlib.Path, required=True, help="release annotation pickle to refine")
    io.add_argument("--images", type=pathlib.Path, required=True,
                    help="directory the annotation keys are relative to (photo = IMAGES/<key>)")
    io.add_argument("--masks", type=pathlib.Path, required=True,
                    help="reference masks: MASKS/<key with its extension replaced by .png>, nonzero = foreground")
    io.add_argument("--cad", type=pathlib.Path, required=True,
                    help="CAD directory: CAD/<synset>/<model_id>/model.obj or CAD/<model_id>/model.obj")
    io.add_argument("--dataset", choices=sorted(anno_lib.DATASETS),
                    help="dataset of --annotations; picks the ShapeNet synset under --cad "
                         "(default: any known synset, then CAD/<model_id>)")
    io.add_argument("--out", type=pathlib.Path, required=True, help="refined annotation pickle (release format)")
    io.add_argument("--json", type=pathlib.Path, help="also write the summary and per-image results as JSON")
    io.add_argument("--overlays", type=pathlib.Path,
                    help="write before/after overlays to OVERLAYS/<key with .png> (v1 red, refined green)")
    io.add_argument("--overlay-width", type=_positive_int, default=600,
                    help="width of the overlays in pixels; height int(H*width/W) (default 600)")
    s = p.add_argument_group("search")
    s.add_argument("--schedule", choices=search.SCHEDULES, default="paper",
                   help="paper: Algorithm 1 with step halving; release: the released code's single-step loop; "
                        "parallel: all 14 moves per step (default paper)")
    s.add_argument("--steps", nargs=7, type=float, metavar=("A", "E", "THETA", "D", "F", "U", "V"),
                   default=list(search.DEFAULT_STEPS),
                   help="step sizes eps: radians for a, e, theta; model units for d; px of the width-300 frame "
                        "for f, u, v (default pi/100 x3, 0.01, 10, 1, 1)")
    s.add_argument("--alpha0", type=_positive_float, default=search.SearchConfig.alpha0,
                   help="initial step multiplier (default %(default)s)")
    s.add_argument("--alpha-min", type=_positive_float, default=search.SearchConfig.alpha_min,
                   help="stop once alpha is halved below this (paper, parallel; default %(default)s)")
    s.add_argument("--max-sweeps", type=_positive_int, default=search.SearchConfig.max_sweeps,
                   help="bound on sweeps per image (default %(default)s)")
    s.add_argument("--coarse", type=_positive_int, default=search.SearchConfig.coarse,
                   help="coarse-to-fine: search first on every COARSE-th row and column of the frame, then on all "
                        "of it (paper, parallel; 1 = off; default %(default)s)")
    s.add_argument("--coarse-alpha", type=_positive_float, default=search.SearchConfig.coarse_alpha,
                   help="alpha at which the coarse search hands over to the full frame (default %(default)s)")
    s.add_argument("--coarse-max-faces", type=_positive_int,
                   help="decimate meshes to at most this many faces for the coarse pass (default: the search meshes)")
    s.add_argument("--max-faces", type=_positive_int,
                   help="decimate meshes to at most this many faces for the search (default: full meshes)")
    s.add_argument("--keep-hidden-faces", action="store_true",
                   help="keep the faces no distant viewpoint sees (default: drop them before decimating; "
                        "they never change a silhouette)")
    r = p.add_argument_group("run")
    r.add_argument("--batch-size", type=_positive_int, default=16, help="images per jitted call (default 16)")
    r.add_argument("--limit", type=_positive_int, help="only the first N keys of --annotations (output holds those)")
    r.add_argument("--device", choices=("default", "cpu", "gpu"), default="default",
                   help="cpu: force the CPU (like JAX_PLATFORMS=cpu); gpu: require a GPU; default: JAX's choice")
    r.add_argument("--restart", action="store_true", help="discard an existing <out>.partial.jsonl instead of resuming")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _select_device(name: str) -> None:
    """Sets the JAX platform; call before any JAX computation."""
    import jax

    if name == "cpu":
        jax.config.update("jax_platforms", "cpu")  # effective if JAX is not initialised yet
        jax.config.update("jax_default_device", jax.devices("cpu")[0])
    elif name == "gpu":
        try:
            gpus = jax.devices("gpu")
        except RuntimeError as err:
            raise ValueError(f"--device gpu: no GPU available to JAX ({err})") from None
        jax.config.update("jax_default_device", gpus[0])


# ----------------------------------------------------------------------------- inputs


@dataclasses.dataclass
class Item:
    """One image to refine."""

    key: str
    ann: anno_lib.Annotation
    photo: pathlib.Path
    mask: pathlib.Path
    width: int
    height: int
    frame_height: int
    mesh_path: pathlib.Path


def _relative_key(key: str) -> pathlib.PurePosixPath:
    rel = pathlib.PurePosixPath(key)
    if rel.is_absolute() or "\\" in key or "\0" in key or any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"not a plain relative path: {key!r}")
    return rel


def mask_path(masks_dir: pathlib.Path, key: str) -> pathlib.Path:
    """``<masks_dir>/<key with its extension replaced by .png>``."""
    return masks_dir.joinpath(*_relative_key(key).with_suffix(".png").parts)


def mesh_candidates(cad_dir: pathlib.Path, model_id: str, dataset: str | None) -> list[pathlib.Path]:
    """Where the mesh of ``model_id`` is looked for, in order."""
    synsets = [anno_lib.DATASETS[dataset].synset] if dataset else list(dict.fromkeys(
        d.synset for d in anno_lib.DATASETS.values()))
    return [cad_dir / s / model_id / "model.obj" for s in synsets] + [cad_dir / model_id / "model.obj"]


def read_photo_size(path: pathlib.Path) -> tuple[int, int]:
    """``(W, H)`` from the photo's header (the pixels are not decoded)."""
    with Image.open(path) as im:
        w, h = im.size
    if w <= 0 or h <= 0:
        raise ValueError(f"invalid size {w}x{h}")
    return w, h


def read_mask(path: pathlib.Path) -> np.ndarray:
    """A PNG mask as ``(H, W)`` bool: nonzero = foreground (palette index, grey level or any colour channel)."""
    with Image.open(path) as im:
        im.load()
        if im.mode in ("LA", "PA", "La"):
            im = im.getchannel(0)  # the grey level or palette index, not the alpha
        elif im.mode in ("RGBA", "RGBa", "CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("RGB")
        arr = np.asarray(im)
    if arr.ndim == 3:
        arr = arr.any(axis=-1)
    if arr.ndim != 2:
        raise ValueError(f"unexpected mask shape {arr.shape}")
    return arr != 0


def scan(table: dict[str, anno_lib.Annotation], args) -> tuple[list[Item], dict[str, tuple[str, str]]]:
    """Checks every image's photo header, mask file and mesh path; returns (items, skipped)."""
    items: list[Item] = []
    skipped: dict[str, tuple[str, str]] = {}
    mesh_paths: dict[str, pathlib.Path | None] = {}
    for key, ann in table.items():
        try:
            rel = _relative_key(key)
        except ValueError as err:
            skipped[key] = ("bad key", str(err))
            continue
        photo = args.images.joinpath(*rel.parts)
        if not photo.is_file():
            skipped[key] = ("photo missing", str(photo))
            continue
        try:
            w, h = read_photo_size(photo)
            frame_h = camera.annotation_frame_height(w, h)
            if frame_h < 1:
                raise ValueError(f"{w}x{h} is too small for a width-300 frame")
        except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
            skipped[key] = ("photo unreadable", f"{photo}: {type(err).__name__}: {err}")
            continue
        mask = mask_path(args.masks, key)
        if not mask.is_file():
            skipped[key] = ("mask missing", str(mask))
            continue
        if ann.model_id not in mesh_paths:
            cands = mesh_candidates(args.cad, ann.model_id, args.dataset)
            mesh_paths[ann.model_id] = next((c for c in cands if c.is_file()), None)
        mesh_path = mesh_paths[ann.model_id]
        if mesh_path is None:
            cands = mesh_candidates(args.cad, ann.model_id, args.dataset)
            skipped[key] = ("mesh missing", "not found: " + ", ".join(map(str, cands)))
            continue
        items.append(Item(key, ann, photo, mask, w, h, frame_h, mesh_path))
    return items, skipped


class MeshStore:
    """Loads each model once (a small LRU; images come sorted by model) and remembers failures."""

    def __init__(self, max_faces: int | None, coarse_max_faces: int | None = None, drop_hidden: bool = True):
        self.max_faces = max_faces
        self.coarse_max_faces = coarse_max_faces
        self.drop_hidden = drop_hidden
        self.meshes: collections.OrderedDict[tuple, mesh_lib.Mesh] = collections.OrderedDict()
        self.failed: dict[pathlib.Path, str] = {}
        self.loads = 0

    def get(self, path: pathlib.Path) -> mesh_lib.Mesh:
        """The search mesh (hidden faces dropped unless kept, decimated to ``max_faces`` if set)."""
        return self._get(path, self.max_faces)

    def get_coarse(self, path: pathlib.Path) -> mesh_lib.Mesh | None:
        """The coarse pass's mesh (decimated to ``coarse_max_faces``), or None if not set."""
        return None if self.coarse_max_faces is None else self._get(path, self.coarse_max_faces)

    def _get(self, path: pathlib.Path, max_faces: int | None) -> mesh_lib.Mesh:
        if path in self.failed:
            raise ValueError(self.failed[path])
        key = (path, max_faces)
        if key in self.meshes:
            self.meshes.move_to_end(key)
            return self.meshes[key]
        self.loads += 1
        try:
            m = mesh_lib.load_mesh(path, max_faces=max_faces, drop_hidden=self.drop_hidden)
        except Exception as err:  # noqa: BLE001 - any parse failure skips the images of that model
            self.failed[path] = f"{path}: {type(err).__name__}: {err}"
            raise ValueError(self.failed[path]) from None
        self.meshes[key] = m
        while len(self.meshes) > MESH_LRU:
            self.meshes.popitem(last=False)
        return m


# ----------------------------------------------------------------------------- checkpoint


def partial_path(out: pathlib.Path) -> pathlib.Path:
    return out.with_name(out.name + PARTIAL_SUFFIX)


def _settings(args, config: search.SearchConfig) -> dict:
    return {"annotations": str(args.annotations.resolve()), "schedule": config.schedule, "steps": list(config.steps),
            "alpha0": config.alpha0, "alpha_min": config.alpha_min, "max_sweeps": config.max_sweeps,
            "coarse": config.coarse, "coarse_alpha": config.coarse_alpha, "max_faces": args.max_faces,
            "coarse_max_faces": args.coarse_max_faces if config.coarse > 1 else None,
            "drop_hidden_faces": not args.keep_hidden_faces}


class PartialFile:
    """Append-only JSON-lines checkpoint: a header line, then one line per finished batch."""

    def __init__(self, path: pathlib.Path):
        self.path = path

    def load(self, settings: dict) -> dict[str, dict]:
        """The finished results ``{key: result}``; raises ValueError on other settings."""
        if not self.path.exists():
            return {}
        data = self.path.read_bytes()
        complete, _, torn = data.rpartition(b"\n")
        lines = complete.split(b"\n") if complete else []
        if torn:  # a line cut by an interruption: that batch was not finished
            self._rewrite(complete + b"\n" if complete else b"")
        if not lines:
            return {}
        try:
            header = json.loads(lines[0])
        except json.JSONDecodeError:
            raise ValueError(f"{self.path}: not a refinement progress file (unreadable header)") from None
        if not isinstance(header, dict) or header.get("format") != PARTIAL_FORMAT:
            raise ValueError(f"{self.path}: not a refinement progress file ({PARTIAL_FORMAT})")
        if header.get("settings") != settings:
            old, new = header.get("settings") or {}, settings
            diff = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in new if old.get(k) != new.get(k))
            raise ValueError(f"{self.path} was written by a run with other settings ({diff}); rerun with the same "
                             "settings to resume, or pass --restart to discard it")
        done: dict[str, dict] = {}
        for n, line in enumerate(lines[1:], 2):
            try:
                batch = json.loads(line)
                for res in batch["results"]:
                    done[res["key"]] = res
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"{self.path}:{n}: corrupt progress line ({err}); pass --restart to discard "
                                 "the file") from None
        return done

    def _rewrite(self, data: bytes) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.path)

    def start(self, settings: dict) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            header = json.dumps({"format": PARTIAL_FORMAT, "settings": settings})
            self._rewrite((header + "\n").encode())

    def append(self, results: list[dict]) -> None:
        line = (json.dumps({"results": results}) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- batches


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _bucket(n: int) -> int:
    """Rounds ``n`` up to 8 steps per octave (at most 12.5% padding)."""
    if n <= 16:
        return 16
    step = 2 ** (n.bit_length() - 1 - 3)
    return _round_up(n, step)


@dataclasses.dataclass
class Ready:
    item: Item
    mesh: mesh_lib.Mesh
    reference: np.ndarray  # (frame_height, 300) bool
    coarse_mesh: mesh_lib.Mesh | None = None  # the coarse pass's mesh, if decimated separately


def ready_batches(items: list[Item], batch_size: int, meshes: MeshStore,
                  skipped: dict[str, tuple[str, str]], on_skip) -> Iterator[list[Ready]]:
    """Loads masks and meshes and yields batches of up to ``batch_size`` usable images."""
    batch: list[Ready] = []
    for it in items:
        try:
            mesh = meshes.get(it.mesh_path)
            coarse_mesh = meshes.get_coarse(it.mesh_path)
        except ValueError as err:
            skipped[it.key] = ("mesh unreadable", str(err))
            on_skip(it)
            continue
        try:
            ref = search.to_annotation_frame(read_mask(it.mask), it.width, it.height)
        except Exception as err:  # noqa: BLE001 - broken PNGs raise many kinds of errors
            skipped[it.key] = ("mask unreadable", f"{it.mask}: {type(err).__name__}: {err}")
            on_skip(it)
            continue
        if not ref.any():
            skipped[it.key] = ("mask empty", f"{it.mask}: no foreground in the annotation frame")
            on_skip(it)
            continue
        batch.append(Ready(it, mesh, ref, coarse_mesh))
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _pack(batch: list[Ready], batch_size: int):
    """Padded arrays for one search call (the batch filled to ``batch_size`` with its last image):
    packed meshes, poses, references, frame heights, and the packed coarse meshes or None."""
    padded = batch + [batch[-1]] * (batch_size - len(batch))

    def pack(meshes):
        return mesh_lib.pack_meshes(meshes, max_vertices=_bucket(max(m.num_vertices for m in meshes)),
                                    max_faces=_bucket(max(m.num_faces for m in meshes)))

    packed = pack([r.mesh for r in padded])
    coarse = None if padded[0].coarse_mesh is None else pack([r.coarse_mesh for r in padded])
    heights = np.array([r.item.frame_height for r in padded], np.int32)
    refs = np.zeros((len(padded), _round_up(int(heights.max()), HEIGHT_MULTIPLE), camera.ANNOTATION_WIDTH), bool)
    for i, r in enumerate(padded):
        refs[i, : r.item.frame_height] = r.reference
    poses = np.array([[getattr(r.item.ann, k) for k in camera.POSE_FIELDS] for r in padded], np.float64)
    return packed, poses, refs, heights, coarse


def refined_record(ann: anno_lib.Annotation, params32: np.ndarray) -> dict:
    """The refined release record. Moves are applied as float32 differences to the float64 originals,
    so a parameter the search did not move keeps its exact original value."""
    rec = ann.to_record()
    for k, p in zip(camera.POSE_FIELDS, params32):
        delta = float(np.float32(p) - np.float32(rec[k]))
        rec[k] = rec[k] + delta
    return rec


def draw_overlays(batch: list[Ready], results: list[dict], packed, out_dir: pathlib.Path, width: int) -> list[str]:
    """Writes one before/after PNG per image; returns the problems (photos that cannot be decoded)."""
    n = len(batch)
    sizes = [(max(1, (r.item.height * width) // r.item.width), width) for r in batch]
    pad_h = _round_up(max(h for h, _ in sizes), HEIGHT_MULTIPLE)
    proj = []
    for which in ("v1", "refined"):
        for r, res, size in zip(batch, results, sizes):
            rec = res[which]
            pose = camera.Pose.from_array(np.array([rec[k] for k in camera.POSE_FIELDS], np.float32))
            proj.append(np.asarray(camera.projection_matrix(pose, r.item.frame_height, image_size=size)))
    verts = np.concatenate([packed.vertices[:n]] * 2)
    faces = np.concatenate([packed.faces[:n]] * 2)
    fmask = np.concatenate([packed.face_mask[:n]] * 2)
    sil = np.asarray(raster.silhouette(verts, faces, np.stack(proj), pad_h, width, face_mask=fmask))
    problems = []
    for i, (r, res, (h, w)) in enumerate(zip(batch, results, sizes)):
        try:
            with Image.open(r.item.photo) as im:
                photo = np.asarray(im.convert("RGB").resize((w, h), Image.BILINEAR))
        except Exception as err:  # noqa: BLE001 - a photo whose header was fine but whose pixels are not
            problems.append(f"{r.item.key}: overlay not drawn, photo cannot be decoded ({type(err).__name__}: {err})")
            continue
        img = viz.refinement_overlay(photo, sil[i, :h], sil[n + i, :h], reference=r.reference,
                                     labels=(f"v1 IoU {res['initial_iou']:.3f}", f"refined IoU {res['iou']:.3f}"))
        dest = out_dir.joinpath(*_relative_key(r.item.key).with_suffix(".png").parts)
        dest.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(dest)
    return problems


# ----------------------------------------------------------------------------- summary


def _angle_diff(a: float, b: float) -> float:
    return (a - b + math.pi) % (2 * math.pi) - math.pi


def summarize(table, done: dict[str, dict], skipped, seconds: float, refined_now: int, extra: dict) -> dict:
    keys = [k for k in table if k in done]
    initial = np.array([done[k]["initial_iou"] for k in keys], np.float64)
    final = np.array([done[k]["iou"] for k in keys], np.float64)
    moved = {}
    for field in camera.POSE_FIELDS:
        if field in ANGLES:
            d = [abs(math.degrees(_angle_diff(done[k]["refined"][field], done[k]["v1"][field]))) for k in keys]
        else:
            d = [abs(done[k]["refined"][field] - done[k]["v1"][field]) for k in keys]
        moved[field] = {"mean_abs_delta": float(np.mean(d)) if d else None, "unit": UNITS[field]}
    by_reason: dict[str, list[str]] = {}
    for key, (reason, _) in skipped.items():
        by_reason.setdefault(reason, []).append(key)
    return {
        "images": len(table),
        "refined": len(keys),
        "refined_this_run": refined_now,
        "resumed": len(keys) - refined_now,
        "skipped": len(skipped),
        "skipped_by_reason": {r: len(v) for r, v in by_reason.items()},
        "mean_iou_before": float(initial.mean()) if keys else None,
        "mean_iou_after": float(final.mean()) if keys else None,
        "improved": int((final > initial).sum()),
        "mean_sweeps": float(np.mean([done[k]["sweeps"] for k in keys])) if keys else None,
        "mean_abs_delta": moved,
        "search_seconds": seconds,
        "seconds_per_image": seconds / refined_now if refined_now else None,
        **extra,
    }


def _print_summary(summary: dict, skipped, file=None) -> None:
    p = lambda *a: print(*a, file=file or sys.stdout)  # noqa: E731
    p(f"refined {summary['refined']} of {summary['images']} images"
      + (f" ({summary['resumed']} from a previous run)" if summary["resumed"] else "")
      + f", skipped {summary['skipped']}")
    if skipped:
        by_reason: dict[str, list[str]] = {}
        for key, (reason, _) in skipped.items():
            by_reason.setdefault(reason, []).append(key)
        for reason in SKIP_REASONS:
            keys = by_reason.get(reason)
            if keys:
                shown = ", ".join(keys[:5]) + (f", ... ({len(keys) - 5} more)" if len(keys) > 5 else "")
                p(f"  skipped, {reason}: {len(keys)} ({shown}); e.g. {skipped[keys[0]][1]}")
    if summary["refined"]:
        p(f"mean IoU: {summary['mean_iou_before']:.4f} before -> {summary['mean_iou_after']:.4f} after "
          f"({summary['improved']} improved; {summary['mean_sweeps']:.1f} sweeps on average)")
        p("mean |change| per parameter: " + ", ".join(
            f"{k} {v['mean_abs_delta']:.4g} {v['unit']}" for k, v in summary["mean_abs_delta"].items()))
    if summary["refined_this_run"]:
        p(f"search: {summary['search_seconds']:.1f} s for {summary['refined_this_run']} images, "
          f"{summary['seconds_per_image']:.3f} s/image (including JIT compilation)")
    for problem in summary.get("overlay_problems", []):
        p(f"warning: {problem}")


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = search.SearchConfig(schedule=args.schedule, steps=tuple(args.steps), alpha0=args.alpha0,
                                     alpha_min=args.alpha_min, max_sweeps=args.max_sweeps, coarse=args.coarse,
                                     coarse_alpha=args.coarse_alpha)
    except ValueError as err:
        parser.error(str(err))
    for name in ("images", "masks", "cad"):
        if not getattr(args, name).is_dir():
            parser.error(f"--{name} {getattr(args, name)} is not a directory")
    if args.out.resolve() == args.annotations.resolve():
        parser.error("--out must not overwrite --annotations")
    try:
        _select_device(args.device)
        table = anno_lib.load_annotations(args.annotations)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.limit is not None:
        table = dict(list(table.items())[: args.limit])

    settings = _settings(args, config)
    partial = PartialFile(partial_path(args.out))
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.restart:
            partial.remove()
        done = partial.load(settings)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    # A result is reused only if its image is still in the input with the same starting record.
    done = {k: r for k, r in done.items() if k in table and r.get("v1") == table[k].to_record()}
    resumed = len(done)

    items, skipped = scan({k: a for k, a in table.items() if k not in done}, args)
    items.sort(key=lambda it: (it.ann.model_id, it.frame_height, it.key))
    meshes = MeshStore(args.max_faces, args.coarse_max_faces if config.coarse > 1 else None,
                       drop_hidden=not args.keep_hidden_faces)
    overlay_problems: list[str] = []
    partial.start(settings)

    bar = tqdm(total=len(table) - len(skipped), initial=resumed, unit="img", disable=args.no_progress,
               file=sys.stderr, desc="refine")

    def on_skip(item):
        bar.total -= 1
        bar.refresh()

    seconds = 0.0
    refined_now = 0
    try:
        for batch in ready_batches(items, args.batch_size, meshes, skipped, on_skip):
            packed, poses, refs, heights, coarse = _pack(batch, args.batch_size)
            t0 = time.perf_counter()
            res = search.refine(packed.vertices, packed.faces, poses, refs, heights, face_mask=packed.face_mask,
                                coarse_mesh=None if coarse is None else (coarse.vertices, coarse.faces, coarse.face_mask),
                                config=config)
            seconds += time.perf_counter() - t0
            results = []
            for i, r in enumerate(batch):
                results.append({
                    "key": r.item.key, "model_id": r.item.ann.model_id,
                    "v1": r.item.ann.to_record(), "refined": refined_record(r.item.ann, res.poses[i]),
                    "initial_iou": float(res.initial_iou[i]), "iou": float(res.iou[i]),
                    "sweeps": int(res.sweeps[i]), "moves": int(res.moves[i]), "alpha": float(res.alpha[i]),
                    "frame_height": r.item.frame_height,
                })
            if args.overlays is not None:
                overlay_problems += draw_overlays(batch, results, packed, args.overlays, args.overlay_width)
            partial.append(results)
            for res_i in results:
                done[res_i["key"]] = res_i
            refined_now += len(batch)
            bar.update(len(batch))
    except KeyboardInterrupt:
        bar.close()
        print(f"\ninterrupted: {len(done)} of {len(table)} images refined and kept in {partial.path}; "
              "rerun the same command to continue", file=sys.stderr)
        return 130
    bar.close()

    out_table = {}
    for key, ann in table.items():
        out_table[key] = anno_lib.Annotation.from_record(key, done[key]["refined"]) if key in done else ann
    summary = summarize(table, done, skipped, seconds, refined_now,
                        {"mesh_loads": meshes.loads, "settings": settings, "overlay_problems": overlay_problems})
    try:
        anno_lib.save_annotations(args.out, out_table)
        if args.json is not None:
            report = {
                "summary": summary,
                "images": [done[k] for k in table if k in done],
                "skipped": [{"key": k, "reason": r, "detail": d} for k, (r, d) in skipped.items()],
            }
            args.json.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.json.with_name(f".{args.json.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(report, indent=1))
            os.replace(tmp, args.json)
    except OSError as err:
        print(f"error: {err} (progress kept in {partial.path})", file=sys.stderr)
        return 2
    partial.remove()
    _print_summary(summary, skipped)
    print(f"wrote {args.out}" + (f" and {args.json}" if args.json else ""))
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
