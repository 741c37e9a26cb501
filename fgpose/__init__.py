"""fgpose: 3D pose estimation and annotation refinement for fine-grained object categories."""

__version__ = "0.1.0"
