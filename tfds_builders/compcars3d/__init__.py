"""The ``compcars3d`` TFDS builder."""

from tfds_builders.compcars3d.compcars3d_dataset_builder import Builder

__all__ = ["Builder"]
