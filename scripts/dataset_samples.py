"""A grid of photos from a built fgpose dataset, each with its box and class name.

Usage::

    python scripts/dataset_samples.py synthetic_pose3d/small --data_dir ~/tensorflow_datasets \\
        [--split train] [--count 12] [--columns 4] [--side 200] [--out docs/images/synthetic_samples.png]

Reads the dataset with ``tfds.data_source`` (random access; the dataset must be built, see
``python -m tfds_builders.build``), takes the first ``--count`` examples of the split, scales
each photo to ``--side`` pixels on its longer side, draws the ground-truth box (red) with
:func:`fgpose.viz.pose_overlay` and tiles them with :func:`fgpose.viz.save_image_grid`.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import cv2
import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="TFDS name with config, e.g. synthetic_pose3d/small")
    parser.add_argument("--data_dir", required=True, help="TFDS data directory holding the built dataset")
    parser.add_argument("--split", default="train")
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--columns", type=int, default=4)
    parser.add_argument("--side", type=int, default=200, help="longer side of each tile in pixels")
    parser.add_argument("--out", default="out/dataset_samples.png")
    args = parser.parse_args(argv)
    if args.count < 1 or args.side < 16:
        parser.error("--count must be >= 1 and --side >= 16")

    import tensorflow_datasets as tfds

    import tfds_builders  # noqa: F401  (registers the builders)
    from fgpose import viz

    try:
        builder = tfds.builder(args.name, data_dir=args.data_dir)
        source = builder.as_data_source(split=args.split)
    except Exception as e:  # noqa: BLE001  (TFDS raises several types for "not built")
        print(f"cannot read {args.name} [{args.split}] in {args.data_dir}: {e}\n"
              f"build it first: python -m tfds_builders.build {args.name.split('/')[0]} "
              f"--data_dir {args.data_dir}", file=sys.stderr)
        return 2
    names = builder.info.features["label"].names
    tiles = []
    for i in range(min(args.count, len(source))):
        ex = source[i]
        img = np.asarray(ex["image"])
        s = args.side / max(img.shape[:2])
        small = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
        box = np.asarray(ex["box"], np.float64) * s  # (y0, x0, y1, x1) original pixels
        tiles.append(viz.pose_overlay(small, gt_box=box, text=names[int(ex["label"])], min_size=0))
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    viz.save_image_grid(tiles, out, columns=args.columns)
    print(f"wrote {out} ({len(tiles)} photos of {args.name} [{args.split}])")
    return 0


if __name__ == "__main__":
    sys.exit(main())
