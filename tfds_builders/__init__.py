"""TFDS builders of fgpose: ``stanford_cars3d``, ``compcars3d``, ``fgvc_aircraft3d`` (real data
read from a manual directory laid out like the finegrained-pose release) and
``synthetic_pose3d`` (procedural, embedded). Importing this package registers all four: this
is the one place they are registered, and fgpose reaches them only through
:mod:`fgpose.data.registry` (this package sits below ``fgpose.data`` and imports only lower
fgpose modules: camera, annotations, mesh, raster, record geometry, synthetic).

Each builder is a thin wrapper: it parses its layout and calls
:func:`fgpose.record_geometry.record_geometry` (camera matrices, box, mask and location
field from fgpose's camera and jitted rasterizer), and answers ``class_meshes()``: the mesh of
each of its classes, in label order (evaluation's ``~e_ADD`` models). Features:
:func:`tfds_builders.base.pose3d_features`. Default file format: array_record, so
``tfds.data_source(name, data_dir=...)`` gives random access.
"""

from tfds_builders import base
from tfds_builders.compcars3d import Builder as CompCars3D
from tfds_builders.fgvc_aircraft3d import Builder as FgvcAircraft3D
from tfds_builders.stanford_cars3d import Builder as StanfordCars3D
from tfds_builders.synthetic_pose3d import Builder as SyntheticPose3D

__all__ = ["CompCars3D", "FgvcAircraft3D", "StanfordCars3D", "SyntheticPose3D", "base"]
