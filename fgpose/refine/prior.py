"""The prior on refinement moves: how far the release's refinement moved the human annotation.

The ``map`` objective (:mod:`fgpose.refine.objective`) penalises a move ``p - p0`` away
from the input (human) pose by the negative log of a Laplace density with location 0 and
per-parameter scale ``b``. The scales are fitted on the release itself: for every
StanfordCars3D and FGVC-Aircraft3D record that has both a human (v1) and a refined (v2)
annotation, ``delta = v2 - v1`` (angles wrapped to [-pi, pi)), and ``b_i = mean |delta_i|``
(the maximum-likelihood Laplace scale at location 0). ``scripts/fit_refine_prior.py`` runs
the fit and writes :data:`PRIOR_PATH`, which ships with the package; tests re-fit it.

Units of the scales: radians for a, e, theta; model units for d; px of the width-300
annotation frame for f, u, v (``fgpose.camera.POSE_FIELDS`` order).
"""

from __future__ import annotations

import json
import math
import os
import pathlib

import numpy as np

from fgpose import annotations as anno_lib
from fgpose import camera

PRIOR_PATH = pathlib.Path(__file__).with_name("refine_prior.json")
"""The shipped fit (``scripts/fit_refine_prior.py``)."""
PRIOR_DATASETS = ("StanfordCars", "FGVC_Aircraft")
"""The release datasets with both v1 and v2 annotations."""
POOLED = "pooled"
"""The fit over the records of all :data:`PRIOR_DATASETS` together (the default prior)."""


def release_deltas(root: str | os.PathLike, dataset: str) -> np.ndarray:
    """``(N, 7)`` float64 ``v2 - v1`` of every record (train then test, keys sorted) with both
    versions and the same model; angles wrapped to [-pi, pi)."""
    out = []
    for split in ("train", "test"):
        v1 = anno_lib.load_split(root, dataset, split, 1)
        v2 = anno_lib.load_split(root, dataset, split, 2)
        for key in sorted(v2):
            a, b = v1.get(key), v2[key]
            if a is None or a.model_id != b.model_id:
                continue
            out.append([getattr(b, f) - getattr(a, f) for f in camera.POSE_FIELDS])
    deltas = np.asarray(out, np.float64).reshape(-1, 7)
    deltas[:, :3] = (deltas[:, :3] + math.pi) % (2 * math.pi) - math.pi
    return deltas


def fit_laplace_scale(deltas: np.ndarray) -> np.ndarray:
    """``(7,)`` maximum-likelihood Laplace scales at location 0: ``mean |delta|`` per column."""
    deltas = np.asarray(deltas, np.float64)
    if deltas.ndim != 2 or deltas.shape[1] != 7 or len(deltas) == 0:
        raise ValueError(f"deltas must be (N >= 1, 7), got {deltas.shape}")
    return np.mean(np.abs(deltas), axis=0)


def fit_release_prior(root: str | os.PathLike) -> dict:
    """The JSON-ready prior: per dataset and :data:`POOLED`, the record count and the 7 scales
    (plus median and 90th percentile of ``|delta|`` for reference)."""
    per = {ds: release_deltas(root, ds) for ds in PRIOR_DATASETS}
    per[POOLED] = np.concatenate(list(per.values()))

    def entry(d: np.ndarray) -> dict:
        return {"records": int(len(d)), "scale": [float(x) for x in fit_laplace_scale(d)],
                "abs_median": [float(x) for x in np.median(np.abs(d), axis=0)],
                "abs_q90": [float(x) for x in np.quantile(np.abs(d), 0.9, axis=0)]}

    return {
        "description": "Laplace prior (location 0) on refinement moves v2 - v1 of the finegrained-pose release; "
                       "scale = mean |v2 - v1| per parameter (angles wrapped to [-pi, pi))",
        "fields": list(camera.POSE_FIELDS),
        "units": ["rad", "rad", "rad", "model units", "px (width-300 frame)", "px (width-300 frame)",
                  "px (width-300 frame)"],
        "fits": {name: entry(d) for name, d in per.items()},
    }


def load_prior(path: str | os.PathLike | None = None) -> dict:
    """The prior file (default :data:`PRIOR_PATH`) as written by :func:`fit_release_prior`."""
    return json.loads(pathlib.Path(PRIOR_PATH if path is None else path).read_text())


def load_prior_scale(fit: str = POOLED, path: str | os.PathLike | None = None) -> tuple[float, ...]:
    """The 7 Laplace scales of one fit (``pooled``, ``StanfordCars`` or ``FGVC_Aircraft``)."""
    fits = load_prior(path)["fits"]
    if fit not in fits:
        raise ValueError(f"no prior fit {fit!r}; the file has {sorted(fits)}")
    return tuple(float(x) for x in fits[fit]["scale"])
