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
photo, ``overlay.png``. Pose units: radians; f, u, v in pixels of the width-300 frame.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np
from PIL import Image

from fgpose import annotations as anno_lib
from fgpose import camera, mesh as mesh_lib, raster, viz


def _parse_size(text: str) -> str | tuple[int, int]:
    if text in ("annotation", "original"):
        return text
    try:
        h, w = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must be 'annotation', 'original' or HxW, got {text!r}") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"--size must be positive, got {text!r}")
    return h, w


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
    m.add_argument("--max-faces", type=int, help="decimate the mesh to at most this many faces")
    f = p.add_argument_group("frame")
    f.add_argument("--image", type=pathlib.Path, help="the photo: sets the original size, enables overlay.png")
    f.add_argument("--image-size", nargs=2, type=int, metavar=("W", "H"),
                   help="original photo size when no --image is given")
    f.add_argument("--frame-height", type=int,
                   help="height of the width-300 annotation frame (default int(H*300/W), else 200)")
    f.add_argument("--size", type=_parse_size, default="annotation",
                   help="output size: 'annotation' (300 wide), 'original' (the photo's) or HxW (default: annotation)")
    p.add_argument("--out", type=pathlib.Path, required=True, help="output directory")
    return p


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
        pose = camera.Pose.from_array(np.asarray(args.pose, np.float32))
    mesh_path = args.mesh
    if mesh_path is None:
        if args.cad_dir is None or model_id is None:
            parser.error("give --mesh, or --annotations with --cad-dir")
        synset = anno_lib.get_dataset(args.dataset).synset
        mesh_path = args.cad_dir / synset / model_id / "model.obj"
    photo = None
    if args.image is not None:
        photo = np.asarray(Image.open(args.image).convert("RGB"))
        orig_h, orig_w = photo.shape[:2]
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
    return pose, mesh_path, photo, frame_h, out_size


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        pose, mesh_path, photo, frame_h, (height, width) = _resolve(args, parser)
        mesh = mesh_lib.load_mesh(mesh_path, normalize=args.normalize, max_faces=args.max_faces)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    proj = camera.projection_matrix(pose, frame_h, image_size=(height, width))
    out = raster.render(mesh.vertices, mesh.faces, proj, height, width)
    mask = np.asarray(out.mask)
    depth = np.asarray(out.depth)
    loc = np.asarray(out.location)
    args.out.mkdir(parents=True, exist_ok=True)
    Image.fromarray((mask * 255).astype(np.uint8)).save(args.out / "mask.png")
    np.save(args.out / "depth.npy", depth)
    Image.fromarray(viz.depth_to_rgb(depth, mask)).save(args.out / "depth.png")
    np.save(args.out / "location.npy", loc)
    Image.fromarray(viz.location_field_to_rgb(loc, mask)).save(args.out / "location.png")
    np.save(args.out / "face_id.npy", np.asarray(out.face_id))
    if photo is not None:
        Image.fromarray(viz.overlay_mask(photo, mask)).save(args.out / "overlay.png")
    summary = {"mesh": str(mesh_path), "faces": int(mesh.num_faces), "size_hw": [height, width],
               "frame_height": int(frame_h), "pose": dict(zip(camera.POSE_FIELDS, map(float, pose.as_array()))),
               "foreground_pixels": int(mask.sum())}
    if mask.any():
        ys, xs = np.nonzero(mask)
        summary["box_yxyx"] = [int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1]
    (args.out / "render.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
