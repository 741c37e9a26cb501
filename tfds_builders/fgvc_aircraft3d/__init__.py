"""The ``fgvc_aircraft3d`` TFDS builder."""

from tfds_builders.fgvc_aircraft3d.fgvc_aircraft3d_dataset_builder import Builder

__all__ = ["Builder"]
