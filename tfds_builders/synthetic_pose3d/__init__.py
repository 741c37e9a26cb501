"""The ``synthetic_pose3d`` TFDS builder."""

from tfds_builders.synthetic_pose3d.synthetic_pose3d_dataset_builder import Builder

__all__ = ["Builder"]
