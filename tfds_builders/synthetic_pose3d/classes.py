"""The procedural classes of ``synthetic_pose3d`` and their photos.

Shared by the builder (:mod:`.synthetic_pose3d_dataset_builder`) and the photo-rendering
worker process (:mod:`.render_worker`), which both import it; neither imports the other's
module for these, so the two stay free of an import cycle.
"""

from __future__ import annotations

import numpy as np

from fgpose import mesh as mesh_lib
from tfds_builders import base


def real_sources(real_meshes: bool) -> list:
    """The real meshes of a config (``[]`` unless ``real_meshes``), from
    ``$FGPOSE_RELEASE_DIR``; raises if they are asked for but none is found."""
    if not real_meshes:
        return []
    from fgpose import annotations, synthetic  # noqa: PLC0415

    sources = synthetic.real_mesh_sources(annotations.release_dir())
    if not sources:
        raise FileNotFoundError(
            f"real_meshes=True needs ${annotations.RELEASE_DIR_ENV} pointing at the release "
            "(its CAD/02958343/.../model.obj, and ../meshes/airplane.ply); none was found")
    return sources


def class_names(num_car_classes: int, num_airplane_classes: int, real_meshes: bool = False) -> list[str]:
    """Label names of a config: ``fgpose.synthetic.synthetic_classes``' naming
    (``<category>_<type>_<ii>``, then the real meshes' names), computed without building
    the meshes (checked against the real classes at generation time)."""
    from fgpose.synthetic import class_type  # noqa: PLC0415

    return [
        f"{category}_{class_type(category, i)}_{i:02d}"
        for category, count in (("car", num_car_classes), ("airplane", num_airplane_classes))
        for i in range(count)
    ] + [source[0] for source in real_sources(real_meshes)]


def make_classes(fields: dict):
    """The config's :class:`fgpose.synthetic.SyntheticClass` list (meshes decimated to
    ``max_faces`` if larger), checked against :func:`class_names`."""
    from fgpose import synthetic  # noqa: PLC0415

    real = fields.get("real_meshes", False)
    kwargs = {} if fields["max_faces"] is None else {"max_faces": fields["max_faces"]}
    classes = synthetic.synthetic_classes(fields["num_car_classes"], fields["num_airplane_classes"],
                                          seed=fields["catalogue_seed"], real_meshes=real_sources(real), **kwargs)
    names = [c.name for c in classes]
    expected = class_names(fields["num_car_classes"], fields["num_airplane_classes"], real)
    if names != expected:
        raise RuntimeError(f"fgpose.synthetic class names {names} differ from the label names {expected}")
    if fields["max_faces"] is not None:
        for c in classes:
            if c.mesh.num_faces > fields["max_faces"]:
                c.mesh = mesh_lib.decimate(c.mesh, fields["max_faces"])
                c.parts = None  # per-face parts do not survive decimation
    return classes


def render_jpeg(classes, label: int, pose: np.ndarray, hw: tuple[int, int], rng_state: dict) -> bytes:
    """The synthetic photo (JPEG q95) of one example; ``rng_state`` is the example
    generator's ``bit_generator.state`` after :func:`sample_example`."""
    from fgpose import synthetic  # noqa: PLC0415

    rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = rng_state
    cls = classes[label]
    return base.encode_jpeg(synthetic.render_photo(cls.mesh, pose, hw, rng, category=cls.category, parts=cls.parts))
