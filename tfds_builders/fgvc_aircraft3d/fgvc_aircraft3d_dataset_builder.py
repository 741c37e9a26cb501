"""FGVC-Aircraft3D: FGVC-Aircraft 2013b photos with the release's 3D pose annotations (v1, v2).

Labels: the 100 variant names of ``fgvc-aircraft-2013b/data/variants.txt`` in file order;
an image's label is its variant in ``images_variant_trainval.txt`` or
``images_variant_test.txt`` (lines ``<image id> <variant name>``; both files are read, so the
release's split need not match FGVC's). The key ``0034309.jpg`` is image id ``0034309``.
Photos are used as distributed (with the copyright banner, as the release annotated them).
"""

from __future__ import annotations

import pathlib

from tfds_builders import base

FGVC_DATA = "fgvc-aircraft-2013b/data"
"""Where the FGVC-Aircraft label files are, relative to the manual directory."""

VARIANTS_FILE = "variants.txt"
IMAGE_VARIANT_FILES = ("images_variant_trainval.txt", "images_variant_test.txt")


def load_variants(path: pathlib.Path) -> list[str]:
    """Variant names, one per non-empty line, in file order."""
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_image_variants(path: pathlib.Path) -> dict[str, str]:
    """``{image id: variant name}`` from an ``images_variant_*.txt`` file."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.strip().split(" ", 1)
        if len(parts) == 2:
            out[parts[0]] = parts[1].strip()
    return out


class Builder(base.ReleaseBuilder):
    """FGVC-Aircraft3D (configs ``v1``: human annotations, ``v2``: refined)."""

    DATASET = "FGVC_Aircraft"
    DESCRIPTION = __doc__
    BUILDER_CONFIGS = base.v1_v2_configs()
    DEFAULT_BUILDER_CONFIG_NAME = "v2"
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        base.RELEASE_INSTRUCTIONS.format(synset="02691156")
        + f"""\
3. FGVC-Aircraft 2013b (https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/):
   fgvc-aircraft-2013b.tar.gz, extracted into <manual_dir>/ (giving {FGVC_DATA}/images/,
   {FGVC_DATA}/variants.txt, {FGVC_DATA}/images_variant_{{trainval,test}}.txt). Photos are
   read from <manual_dir>/Image/FGVC_Aircraft/<id>.jpg (the release layout; a symlink to
   {FGVC_DATA}/images is enough) or else from {FGVC_DATA}/images/<id>.jpg.

Resulting layout (only the FGVC-Aircraft parts are needed):
"""
        + base.release_manual_dir_layout()
    )

    def _image_path(self, root: pathlib.Path, split: str, key: str) -> pathlib.Path:
        path = super()._image_path(root, split, key)
        if not path.exists():
            fallback = root.joinpath(*FGVC_DATA.split("/"), "images", *key.split("/"))
            if fallback.exists():
                return fallback
        return path

    def _load_labels(self, root: pathlib.Path) -> base.Labels:
        data = root.joinpath(*FGVC_DATA.split("/"))
        files = [data / VARIANTS_FILE] + [data / f for f in IMAGE_VARIANT_FILES]
        self._require_label_files("the FGVC-Aircraft label files", files, "fgvc-aircraft-2013b.tar.gz, see step 3")
        names = load_variants(data / VARIANTS_FILE)
        self._check_num_classes(names, data / VARIANTS_FILE, "variants")
        index = {n: i for i, n in enumerate(names)}
        variant = {}
        for f in IMAGE_VARIANT_FILES:
            variant.update(load_image_variants(data / f))

        def lookup(split, key, ann):
            image_id = key.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            return index.get(variant.get(image_id, ""))

        return base.Labels(names=names, lookup=lookup)
