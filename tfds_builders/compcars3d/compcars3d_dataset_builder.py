"""CompCars3D: CompCars web-nature photos with the release's 3D pose annotations (v1 only).

Labels: the 113 CompCars *model ids* of the release (the second component of the key
``make/model/year/hash.jpg``), sorted numerically; class names are those ids as strings
(``"1"``, ``"2"``, ..., ``"1946"``). Line ``i`` of the release's ``CAD/CompCars3D.txt`` is the
CAD model of class ``i`` (checked on the release: every one of the 5696 annotations uses the
CAD of its class line; 11 CAD models serve two classes, hence 98 distinct models). A key whose
model id is not one of the 113 is skipped (``no_label``); an annotation whose CAD differs
from its class line is kept and counted in the log.
"""

from __future__ import annotations

import logging
import pathlib

from fgpose import annotations as anno_lib
from tfds_builders import base

log = logging.getLogger("tfds_builders")

CLASS_NAMES = (
    "1", "2", "3", "4", "11", "21", "23", "27", "32", "42", "44", "68", "70", "75", "85", "86",
    "88", "89", "94", "100", "101", "105", "106", "124", "126", "127", "130", "132", "152",
    "154", "156", "160", "162", "213", "251", "252", "255", "256", "266", "317", "319", "321",
    "326", "459", "460", "461", "465", "467", "500", "501", "502", "587", "590", "593", "595",
    "597", "600", "608", "661", "735", "763", "765", "770", "827", "828", "829", "831", "854",
    "859", "872", "910", "911", "956", "958", "961", "964", "968", "1023", "1131", "1134",
    "1135", "1138", "1159", "1236", "1237", "1258", "1321", "1322", "1327", "1333", "1386",
    "1387", "1389", "1570", "1577", "1578", "1609", "1611", "1614", "1620", "1633", "1634",
    "1692", "1701", "1702", "1707", "1720", "1866", "1871", "1885", "1889", "1909", "1946",
)
"""The release's CompCars model ids (numeric order), i.e. the class names in label order."""


class Builder(base.ReleaseBuilder):
    """CompCars3D (config ``v1``: the release's only annotations)."""

    DATASET = "CompCars"
    CLASS_NAMES = CLASS_NAMES
    DESCRIPTION = __doc__
    BUILDER_CONFIGS = [
        base.Pose3DConfig(name="v1", annotation_version=1, description="the release's annotations"),
    ]
    DEFAULT_BUILDER_CONFIG_NAME = "v1"
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        base.RELEASE_INSTRUCTIONS.format(synset="02958343")
        + """\
3. CompCars (http://mmlab.ie.cuhk.edu.hk/datasets/comp_cars/, license agreement needed):
   the web-nature data (data.zip and its split parts); place its data/image/ directory as
   <manual_dir>/Image/CompCars/image/ so that Image/CompCars/image/<make>/<model>/<year>/
   <hash>.jpg exists. The class labels come from the image keys themselves; nothing else
   is needed.

Resulting layout (only the CompCars parts are needed):
"""
        + base.release_manual_dir_layout()
    )

    def _load_labels(self, root: pathlib.Path) -> base.Labels:
        index = {n: i for i, n in enumerate(CLASS_NAMES)}
        try:
            class_cads = anno_lib.load_class_models(root, self.DATASET)
        except OSError:
            class_cads = None
            log.warning("%s: %s not found; the CAD-per-class check is skipped", self.name,
                        anno_lib.DATASETS[self.DATASET].class_models_file)
        if class_cads is not None and len(class_cads) != len(CLASS_NAMES):
            raise ValueError(f"CAD/CompCars3D.txt has {len(class_cads)} lines, expected {len(CLASS_NAMES)}")
        mismatches = [0]

        def lookup(split, key, ann):
            parts = key.split("/")
            label = index.get(parts[1]) if len(parts) == 4 else None
            if label is not None and class_cads is not None and class_cads[label] != ann.model_id:
                mismatches[0] += 1
                if mismatches[0] <= 5:
                    log.warning("%s: %r uses CAD %s, its class line says %s", self.name, key,
                                ann.model_id, class_cads[label])
            return label

        return base.Labels(names=None, lookup=lookup)
