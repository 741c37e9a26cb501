"""Fits the synthetic-data pose prior to the release's train annotations.

Reads ``$FGPOSE_RELEASE_DIR`` (or ``--release-dir``), fits one Gaussian-copula prior per
category (:func:`fgpose.synthetic.poses.fit_prior`):

* car: StanfordCars v2 train + CompCars v1 train (CompCars has v1 only);
* airplane: FGVC_Aircraft v2 train;

writes them to ``fgpose/synthetic/pose_prior.json`` (:data:`fgpose.synthetic.poses.PRIOR_FILE`,
package data read by :func:`~fgpose.synthetic.poses.default_prior`; ``--output`` writes
elsewhere, ``--dry-run`` skips it)
and prints a table comparing quantiles of the real annotations with raw prior samples and
with :func:`~fgpose.synthetic.poses.sample_poses` samples (after the in-image rejection, on
:func:`~fgpose.synthetic.poses.sample_image_hw` photo sizes), plus KS statistics.

Usage::

    FGPOSE_RELEASE_DIR=../shared/finegrained_pose .venv/bin/python scripts/fit_pose_prior.py
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np
from scipy import stats

from fgpose import annotations
from fgpose.synthetic import poses as P

SOURCES = {
    "car": (("StanfordCars", "train", 2), ("CompCars", "train", 1)),
    "airplane": (("FGVC_Aircraft", "train", 2),),
}

DEFAULT_OUTPUT = pathlib.Path(__file__).resolve().parents[1] / "fgpose" / "synthetic" / P.PRIOR_FILE


def real_poses(root, category: str) -> np.ndarray:
    """``(N, 7)`` float64 train poses of a category's sources (see :data:`SOURCES`)."""
    rows = []
    for dataset, split, version in SOURCES[category]:
        for a in annotations.load_split(root, dataset, split, version).values():
            rows.append([getattr(a, k) for k in annotations.FLOAT_FIELDS])
    return np.asarray(rows, np.float64)


def comparison_table(category: str, real: np.ndarray, prior: P.PosePrior, n: int = 20000, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    raw = prior.sample_raw(rng, n)
    hw = P.sample_image_hw(rng, n, category)
    acc = P.sample_poses(rng, n, category, hw, prior=prior)
    xr, xw, xa = P.to_prior_space(real), P.to_prior_space(raw), P.to_prior_space(acc)
    qs = (0.05, 0.25, 0.5, 0.75, 0.95)
    lines = [f"== {category}: {len(real)} real annotations ({', '.join(prior.sources)})",
             f"{'variable':>13} {'set':>8} " + " ".join(f"q{int(q*100):02d}".rjust(9) for q in qs) + "   KS"]
    for i, name in enumerate(P.PRIOR_VARIABLES):
        for label, x in (("real", xr), ("prior", xw), ("sampled", xa)):
            ks = "" if label == "real" else f"{stats.ks_2samp(xr[:, i], x[:, i]).statistic:.3f}"
            lines.append(f"{name:>13} {label:>8} " + " ".join(f"{v:9.3f}" for v in np.quantile(x[:, i], qs)) + f"   {ks}")
    for label, x in (("real", real), ("prior", raw), ("sampled", acc)):
        ks = "" if label == "real" else f"{stats.ks_2samp(np.log(real[:, 3]), np.log(x[:, 3])).statistic:.3f}"
        lines.append(f"{'log_distance':>13} {label:>8} " + " ".join(f"{v:9.3f}" for v in np.quantile(np.log(x[:, 3]), qs)) + f"   {ks}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--release-dir", default=None, help="release root (default $FGPOSE_RELEASE_DIR)")
    parser.add_argument("--output", type=pathlib.Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--dry-run", action="store_true", help="print the table, do not write the output")
    args = parser.parse_args(argv)
    root = annotations.require_release_dir(args.release_dir)
    priors = {}
    for category in SOURCES:
        real = real_poses(root, category)
        srcs = tuple(f"{d} {s} v{v}" for d, s, v in SOURCES[category])
        priors[category] = P.fit_prior(real, category, srcs)
        print(comparison_table(category, real, priors[category]))
        print()
    if not args.dry_run:
        args.output.write_text(P.priors_to_json(priors), encoding="utf-8")
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
