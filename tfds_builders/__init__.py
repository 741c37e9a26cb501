"""TFDS builders for StanfordCars3D, CompCars3D, FGVC-Aircraft3D and the embedded synthetic
dataset (one sub-package per dataset; thin wrappers over fgpose's camera, mesh and raster)."""
