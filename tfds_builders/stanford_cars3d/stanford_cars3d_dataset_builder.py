"""StanfordCars3D: Stanford Cars photos with the release's 3D pose annotations (v1, v2).

Labels: the 196 class names of the Stanford Cars devkit in devkit order
(``devkit/cars_meta.mat``, ``class_names``), per image from ``devkit/cars_train_annos.mat``
(train keys) and ``devkit/cars_test_annos_withlabels.mat`` (test keys): the ``class`` field
(1-based) of the record whose ``fname`` is the release key.
"""

from __future__ import annotations

import pathlib

import numpy as np
import tensorflow_datasets as tfds

from tfds_builders import base

DEVKIT = "Image/StanfordCars/devkit"
"""Where the devkit's .mat files go, relative to the manual directory."""

META_FILE = "cars_meta.mat"
ANNO_FILES = {"train": "cars_train_annos.mat", "test": "cars_test_annos_withlabels.mat"}


def _loadmat(path: pathlib.Path) -> dict:
    import scipy.io  # noqa: PLC0415

    return scipy.io.loadmat(path, squeeze_me=True, struct_as_record=True)


def load_class_names(path: pathlib.Path) -> list[str]:
    """The ``class_names`` of ``cars_meta.mat`` in file (= label) order."""
    names = np.atleast_1d(_loadmat(path)["class_names"])
    return [str(n).strip() for n in names.tolist()]


def load_image_labels(path: pathlib.Path) -> dict[str, int]:
    """``{fname: class index (0-based)}`` from a devkit annotations .mat file."""
    ann = np.atleast_1d(_loadmat(path)["annotations"])
    return {str(f).strip(): int(c) - 1 for f, c in zip(ann["fname"].tolist(), ann["class"].tolist())}


class Builder(base.ReleaseBuilder):
    """StanfordCars3D (configs ``v1``: human annotations, ``v2``: refined)."""

    DATASET = "StanfordCars"
    DESCRIPTION = __doc__
    BUILDER_CONFIGS = base.v1_v2_configs()
    DEFAULT_BUILDER_CONFIG_NAME = "v2"
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        base.RELEASE_INSTRUCTIONS.format(synset="02958343")
        + f"""\
3. Stanford Cars (https://ai.stanford.edu/~jkrause/cars/car_dataset.html; the original
   host is often offline, the same files are mirrored): cars_train.tgz, cars_test.tgz,
   car_devkit.tgz and cars_test_annos_withlabels.mat. Extract the three archives into
   <manual_dir>/Image/StanfordCars/ (giving cars_train/, cars_test/, devkit/) and put
   cars_test_annos_withlabels.mat into <manual_dir>/{DEVKIT}/.

Resulting layout (only the StanfordCars parts are needed):
"""
        + base.release_manual_dir_layout()
    )

    def _load_labels(self, root: pathlib.Path) -> base.Labels:
        devkit = root / DEVKIT
        files = [devkit / META_FILE] + [devkit / f for f in ANNO_FILES.values()]
        self._require_label_files(
            "the Stanford Cars devkit label files", files,
            "car_devkit.tgz and cars_test_annos_withlabels.mat, see step 3",
        )
        names = load_class_names(devkit / META_FILE)
        self._check_num_classes(names, devkit / META_FILE, "class names")
        per_split = {s: load_image_labels(devkit / f) for s, f in ANNO_FILES.items()}

        def lookup(split, key, ann):
            label = per_split[split].get(key)
            return label if label is not None and 0 <= label < self.NUM_CLASSES else None

        return base.Labels(names=names, lookup=lookup)
