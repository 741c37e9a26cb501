"""Synthetic data for fgpose: procedural class meshes, a pose prior fitted to the release,
photo rendering (pyrender) and batched location-field generation (JAX rasterizer).

Modules:

* :mod:`fgpose.synthetic.shapes` — :func:`class_mesh`, :func:`class_mesh_and_parts`,
  :data:`CAR_PARTS`, :class:`SyntheticClass`,
  :func:`synthetic_classes`, :func:`real_mesh_sources`.
* :mod:`fgpose.synthetic.poses` — :func:`sample_poses`, :func:`sample_image_hw`,
  :class:`PosePrior` (fitted by ``scripts/fit_pose_prior.py``).
* :mod:`fgpose.synthetic.scene` — :class:`PhotoRenderer`, :func:`render_photo`
  (imported lazily: it needs OpenGL).
* :mod:`fgpose.synthetic.fields` — :func:`location_field_stream`.
"""

from fgpose.synthetic.poses import (
    PosePrior,
    default_prior,
    extent_points,
    projected_boxes,
    sample_image_hw,
    sample_poses,
)
from fgpose.synthetic.shapes import (
    AIRPLANE_PLY_ROTATION,
    CAR_PARTS,
    SyntheticClass,
    class_mesh,
    class_mesh_and_parts,
    class_type,
    real_mesh_sources,
    synthetic_classes,
)

__all__ = [
    "AIRPLANE_PLY_ROTATION",
    "CAR_PARTS",
    "PosePrior",
    "SyntheticClass",
    "class_mesh",
    "class_mesh_and_parts",
    "class_type",
    "default_prior",
    "extent_points",
    "location_field_stream",
    "projected_boxes",
    "real_mesh_sources",
    "render_photo",
    "PhotoRenderer",
    "sample_image_hw",
    "sample_poses",
    "synthetic_classes",
]


def __getattr__(name):  # lazy: scene needs OpenGL, fields compiles JAX code
    if name in ("PhotoRenderer", "render_photo"):
        from fgpose.synthetic import scene  # noqa: PLC0415

        return getattr(scene, name)
    if name == "location_field_stream":
        from fgpose.synthetic import fields  # noqa: PLC0415

        return fields.location_field_stream
    raise AttributeError(f"module 'fgpose.synthetic' has no attribute {name!r}")
