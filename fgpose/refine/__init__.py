"""Annotation refinement (Algorithm 1 of Wang et al., "Improving Annotation for 3D Pose
Dataset of Fine-Grained Object Categories", 2018): a greedy local search over the 7 pose
parameters that maximises the IoU between the projected CAD silhouette and a segmentation
reference, in the width-300 annotation frame.

* :mod:`fgpose.refine.search` — the batched, jitted search (schedules ``paper``,
  ``release``, ``parallel``);
* :mod:`fgpose.refine.baseline` — the published loop in plain Python/NumPy, one pose at a
  time (the reference for tests and the baseline for benchmarks);
* ``python -m fgpose.refine`` — the command line (:mod:`fgpose.refine.__main__`).
"""

from fgpose.refine.search import DEFAULT_STEPS, SCHEDULES, RefineResult, SearchConfig, mask_iou, refine, to_annotation_frame

__all__ = ["DEFAULT_STEPS", "SCHEDULES", "RefineResult", "SearchConfig", "mask_iou", "refine", "to_annotation_frame"]
