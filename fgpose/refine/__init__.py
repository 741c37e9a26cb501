"""Annotation refinement (Algorithm 1 of Wang et al., "Improving Annotation for 3D Pose
Dataset of Fine-Grained Object Categories", 2018): a greedy local search over the 7 pose
parameters that maximises the IoU between the projected CAD silhouette and a segmentation
reference, in the width-300 annotation frame.

* :mod:`fgpose.refine.search` — the batched, jitted search (schedules ``paper``,
  ``release``, ``parallel``) and the reference check (``min_reference_iou``);
* :mod:`fgpose.refine.objective` — what the search maximises: ``iou`` (published), and the
  robust terms ``band``, ``soft``, ``offset``, ``map`` for segmentation-network masks;
* :mod:`fgpose.refine.prior` — the ``map`` term's prior on moves, fitted on the release's
  v2 - v1 (``refine_prior.json``, ``scripts/fit_refine_prior.py``);
* :mod:`fgpose.refine.baseline` — the published loop in plain Python/NumPy, one pose at a
  time (the reference for tests and the baseline for benchmarks);
* :mod:`fgpose.refine.inputs` — photo, mask and mesh paths of each annotation key, photo
  sizes, mask reading, and the reasons an image is skipped;
* :mod:`fgpose.refine.records` — the input table read record by record (malformed records
  skipped) and the check that a result is a valid pose;
* :mod:`fgpose.refine.reference_checks` — reference masks of the wrong aspect ratio or an
  implausible foreground fraction, and masks held in an alpha channel;
* :mod:`fgpose.refine.mesh_store` — the search meshes, each model loaded once (LRU);
* :mod:`fgpose.refine.batching` — images with their meshes and masks padded into typed
  batches of static shapes (:class:`~fgpose.refine.batching.SearchBatch`), one search call each;
* :mod:`fgpose.refine.journal` — the append-only journal a run resumes from;
  :mod:`fgpose.refine.completion` — the marker that says a run's outputs are complete;
* :mod:`fgpose.refine.report` and :mod:`fgpose.refine.overlays` — result records, the refined
  table, the summary, and before/after pictures;
* :mod:`fgpose.refine.run` — the batch loop that journals each finished batch;
  :mod:`fgpose.refine.device` — the ``--device`` choice;
* ``python -m fgpose.refine`` — the command line (:mod:`fgpose.refine.__main__`): arguments
  and wiring only.
"""

from fgpose.refine.objective import Objective, parse_objective
from fgpose.refine.search import DEFAULT_STEPS, SCHEDULES, RefineResult, SearchConfig, mask_iou, refine, to_annotation_frame

__all__ = ["DEFAULT_STEPS", "SCHEDULES", "Objective", "RefineResult", "SearchConfig", "mask_iou", "parse_objective", "refine",
           "to_annotation_frame"]
