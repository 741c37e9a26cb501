"""The ``stanford_cars3d`` TFDS builder."""

from tfds_builders.stanford_cars3d.stanford_cars3d_dataset_builder import Builder

__all__ = ["Builder"]
