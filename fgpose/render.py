"""Command line: render a mesh's mask, depth, 3D location field and face ids for one pose.

Examples::

    # A pose given on the command line (a e theta d f u v), in the 300x200 annotation frame:
    python -m fgpose.render --mesh model.obj --pose 2.187 0.047 0.031 1.03 346.4 -23 11 \
        --frame-height 200 --out out/render

    # A key of a release annotation pickle, on its photo, at the photo's resolution:
    python -m fgpose.render --annotations Anno3D/StanfordCars/train_anno_v2.pkl --key 00001.jpg \
        --cad-dir CAD --image Image/StanfordCars/cars_train/00001.jpg --size original --out out/00001

Writes ``mask.png``, ``depth.npy`` + ``depth.png``, ``location.npy`` (float32 H x W x 3,
model-space XYZ) + ``location.png``, ``face_id.npy`` (int32, -1 = background) and, with a
photo, ``overlay.png``, then ``render.json`` (the summary, also printed). Pose units:
radians; f, u, v in pixels of the width-300 frame.

Bad input is refused before any work, with a one-line ``error: ...`` on stderr and exit
status 2: a pose outside :data:`fgpose.annotations.FLOAT_BOUNDS` (NaN, inf, ``d <= 0``,
``f <= 0``, ...), a non-positive ``--frame-height``, ``--image-size``, ``--max-faces`` or
``--size`` (``--size -5x10`` and ``--size=-5x10`` both say so), an unreadable or bad mesh
(:class:`fgpose.mesh.MeshError`) or annotation file, a render whose estimated memory
(:func:`render_memory_bytes`) exceeds ``--max-memory-gb`` (default 4), and an output
directory that cannot be written or lacks the free space for the outputs. Every output file
is written atomically (temporary file, then rename): a failure never leaves a partial file.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys

import numpy as np
from PIL import Image

from fgpose import annotations as anno_lib
from fgpose import camera, mesh as mesh_lib, raster, viz
from fgpose.atomic_io import atomic_write, check_writable_dir, save_npy, save_png

RENDER_BYTES_PER_PIXEL = 128
"""Peak memory of a render per output pixel (bytes): the rasterizer's tile buffers, depth
and location planes and their host copies, and the PNG conversions. Measured about 90-110
on CPU (peak RSS of a 1000x1000 and a 2000x2000 render, less that of a 16x16 one)."""

RENDER_BYTES_PER_FACE = 256
"""Peak memory of a render per mesh face (bytes): corners, binning and planes."""

OUTPUT_BYTES_PER_PIXEL = 24
"""Disk space the outputs take per pixel, at most (bytes): depth.npy 4, location.npy 12,
face_id.npy 4, and the PNGs (at most 4 together for these images, compressed)."""

DEFAULT_MAX_MEMORY_GB = 4.0
"""Default of ``--max-memory-gb``: renders estimated above it are refused."""

_SIZE_RE = re.compile(r"\s*([+-]?\d+)\s*[xX]\s*([+-]?\d+)\s*")


def render_memory_bytes(height: int, width: int, num_faces: int) -> int:
    """Estimated peak memory (bytes) of rendering a ``num_faces`` mesh at ``height x width``."""
    return RENDER_BYTES_PER_PIXEL * height * width + RENDER_BYTES_PER_FACE * num_faces


def _parse_size(text: str) -> str | tuple[int, int]:
    if text in ("annotation", "original"):
        return text
    match = _SIZE_RE.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"--size must be 'annotation', 'original' or HxW, got {text!r}")
    h, w = int(match[1]), int(match[2])
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"--size must be positive (HxW, e.g. 200x300), got {text!r}")
    return h, w


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _join_option_values(argv: list[str]) -> list[str]:
    """``--size -5x10`` as ``--size=-5x10``: argparse takes a value that starts with ``-`` and
    is not a plain negative number for an option, and would say 'expected one argument'."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--size" and i + 1 < len(argv) and argv[i + 1][:1] == "-" and argv[i + 1][:2] != "--":
            out.append(f"--size={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fgpose.render", description=__doc__.split("\n\n")[0])
    src = p.add_argument_group("pose")
    src.add_argument("--pose", nargs=7, type=float, metavar=("A", "E", "THETA", "D", "F", "U", "V"),
                     help="azimuth elevation theta (radians) distance f u v (pixels of the width-300 frame)")
    src.add_argument("--annotations", type=pathlib.Path, help="a release annotation pickle")
    src.add_argument("--key", help="image key in --annotations, e.g. 00001.jpg")
    m = p.add_argument_group("mesh")
    m.add_argument("--mesh", type=pathlib.Path, help="mesh file (OBJ, PLY, ...)")
    m.add_argument("--cad-dir", type=pathlib.Path,
                   help="release CAD directory; with --annotations the mesh is <cad-dir>/<synset>/<model_id>/model.obj")
    m.add_argument("--dataset", default="StanfordCars", choices=sorted(anno_lib.DATASETS),
                   help="dataset of --annotations (picks the ShapeNet synset)")
    m.add_argument("--normalize", action="store_true", help="centre and scale the mesh to a unit bbox diagonal")
    m.add_argument("--max-faces", type=_positive_int, help="decimate the mesh to at most this many faces")
    f = p.add_argument_group("frame")
    f.add_argument("--image", type=pathlib.Path, help="the photo: sets the original size, enables overlay.png")
    f.add_argument("--image-size", nargs=2, type=_positive_int, metavar=("W", "H"),
                   help="original photo size when no --image is given")
    f.add_argument("--frame-height", type=_positive_int,
                   help="height of the width-300 annotation frame (default int(H*300/W), else 200)")
    f.add_argument("--size", type=_parse_size, default="annotation",
                   help="output size: 'annotation' (300 wide), 'original' (the photo's) or HxW (default: annotation)")
    p.add_argument("--max-memory-gb", type=_positive_float, default=DEFAULT_MAX_MEMORY_GB,
                   help="refuse renders whose estimated peak memory exceeds this many GiB "
                        f"(default {DEFAULT_MAX_MEMORY_GB:g}; {RENDER_BYTES_PER_PIXEL} bytes per pixel "
                        f"+ {RENDER_BYTES_PER_FACE} per face)")
    p.add_argument("--out", type=pathlib.Path, required=True, help="output directory")
    return p


def _photo_size(path: pathlib.Path) -> tuple[int, int]:
    """``(W, H)`` of a photo from its header (nothing decoded yet); ``ValueError`` if unreadable."""
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot read the photo {path}: {err}") from None


def _load_photo(path: pathlib.Path) -> np.ndarray:
    """The photo as ``(H, W, 3)`` uint8 RGB; ``ValueError`` if it cannot be decoded."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot decode the photo {path}: {err}") from None


def _resolve(args: argparse.Namespace, parser: argparse.ArgumentParser):
    if (args.pose is None) == (args.annotations is None):
        parser.error("give exactly one of --pose or --annotations/--key")
    model_id = None
    if args.annotations is not None:
        if not args.key:
            parser.error("--annotations needs --key")
        table = anno_lib.load_annotations(args.annotations)
        if args.key not in table:
            parser.error(f"key {args.key!r} is not in {args.annotations} ({len(table)} keys)")
        record = table[args.key]
        pose = record.pose()
        model_id = record.model_id
    else:
        try:
            values = anno_lib.check_pose_values(args.pose, source="--pose")
        except anno_lib.AnnotationError as err:
            raise ValueError(f"--pose {err.field}: {err.problem}") from None
        pose = camera.Pose.from_array(np.asarray(values, np.float32))
    mesh_path = args.mesh
    if mesh_path is None:
        if args.cad_dir is None or model_id is None:
            parser.error("give --mesh, or --annotations with --cad-dir")
        synset = anno_lib.get_dataset(args.dataset).synset
        mesh_path = args.cad_dir / synset / model_id / "model.obj"
    if args.image is not None:
        orig_w, orig_h = _photo_size(args.image)
    elif args.image_size is not None:
        orig_w, orig_h = args.image_size
    else:
        orig_w, orig_h = None, None
    if args.frame_height is not None:
        frame_h = args.frame_height
    elif orig_w is not None:
        frame_h = camera.annotation_frame_height(orig_w, orig_h)
    else:
        frame_h = 200
    if args.size == "annotation":
        out_size = (frame_h, camera.ANNOTATION_WIDTH)
    elif args.size == "original":
        if orig_w is None:
            parser.error("--size original needs --image or --image-size")
        out_size = (orig_h, orig_w)
    else:
        out_size = args.size
    return pose, mesh_path, frame_h, out_size


def _check_memory(height: int, width: int, num_faces: int, limit_gb: float) -> None:
    """Raises ``ValueError`` when :func:`render_memory_bytes` exceeds ``limit_gb`` GiB."""
    need = render_memory_bytes(height, width, num_faces)
    if need > limit_gb * 2**30:
        raise ValueError(
            f"a {height}x{width} render of {num_faces} faces needs about {need / 2**30:.3g} GiB of memory, "
            f"more than --max-memory-gb {limit_gb:g}: choose a smaller --size or raise --max-memory-gb"
        )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_join_option_values(sys.argv[1:] if argv is None else list(argv)))
    created = not args.out.exists()
    try:
        pose, mesh_path, frame_h, (height, width) = _resolve(args, parser)
        _check_memory(height, width, 0, args.max_memory_gb)  # before the mesh is even read
        check_writable_dir(args.out, OUTPUT_BYTES_PER_PIXEL * height * width)
        mesh = mesh_lib.load_mesh(mesh_path, normalize=args.normalize, max_faces=args.max_faces)
        _check_memory(height, width, mesh.num_faces, args.max_memory_gb)
        photo = None if args.image is None else _load_photo(args.image)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        if created and args.out.is_dir() and not any(args.out.iterdir()):
            args.out.rmdir()  # made by check_writable_dir for outputs that will not come
        return 2
    proj = camera.projection_matrix(pose, frame_h, image_size=(height, width))
    out = raster.render(mesh.vertices, mesh.faces, proj, height, width)
    mask = np.asarray(out.mask)
    depth = np.asarray(out.depth)
    loc = np.asarray(out.location)
    summary = {"mesh": str(mesh_path), "faces": int(mesh.num_faces), "size_hw": [height, width],
               "frame_height": int(frame_h), "pose": dict(zip(camera.POSE_FIELDS, map(float, pose.as_array()))),
               "foreground_pixels": int(mask.sum())}
    if mask.any():
        ys, xs = np.nonzero(mask)
        summary["box_yxyx"] = [int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1]
    try:
        save_png(args.out / "mask.png", (mask * 255).astype(np.uint8))
        save_npy(args.out / "depth.npy", depth)
        save_png(args.out / "depth.png", viz.depth_to_rgb(depth, mask))
        save_npy(args.out / "location.npy", loc)
        save_png(args.out / "location.png", viz.location_field_to_rgb(loc, mask))
        save_npy(args.out / "face_id.npy", np.asarray(out.face_id))
        if photo is not None:
            save_png(args.out / "overlay.png", viz.overlay_mask(photo, mask))
        text = json.dumps(summary, indent=2)
        atomic_write(args.out / "render.json", lambda fh: fh.write(text.encode()))
    except OSError as err:
        print(f"error: could not write the outputs to {args.out}: {err}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
