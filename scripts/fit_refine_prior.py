#!/usr/bin/env python
"""Fits the refinement-move prior of the ``map`` objective to the release and writes it.

For every StanfordCars3D and FGVC-Aircraft3D record with both a human (v1) and a refined
(v2) annotation, ``delta = v2 - v1``; the Laplace scale of each parameter is
``mean |delta|`` (:func:`fgpose.refine.prior.fit_release_prior`). Writes
``fgpose/refine/refine_prior.json`` (``--output``) and prints the scales.

Usage::

    FGPOSE_RELEASE_DIR=../shared/finegrained_pose .venv/bin/python scripts/fit_refine_prior.py
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from fgpose import annotations
from fgpose.refine import prior


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--release-dir", help="finegrained_pose release root (default: $FGPOSE_RELEASE_DIR)")
    ap.add_argument("--output", type=pathlib.Path, default=prior.PRIOR_PATH, help="default %(default)s")
    args = ap.parse_args(argv)
    try:
        root = annotations.require_release_dir(args.release_dir, "StanfordCars")
    except ValueError as err:
        ap.error(f"{err} (--release-dir / FGPOSE_RELEASE_DIR)")
    fit = prior.fit_release_prior(root)
    args.output.write_text(json.dumps(fit, indent=1) + "\n")
    print(f"{'fit':<14} {'records':>7}  " + "  ".join(f"{f:>9}" for f in fit["fields"]))
    for name, entry in fit["fits"].items():
        print(f"{name:<14} {entry['records']:>7}  " + "  ".join(f"{s:9.4g}" for s in entry["scale"]))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
