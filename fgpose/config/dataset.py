"""Dataset resolution for a config: the class count, and building a missing local dataset."""

from __future__ import annotations

import logging

import jax

from fgpose.config.checks import ConfigError
from fgpose.data import registry, sources

log = logging.getLogger("fgpose.config")


def resolve_num_classes(config) -> int:
    """``config.dataset.num_classes``, or the built dataset's ``label`` class count.

    With ``config.dataset.auto_build`` a dataset that is not built yet is built first
    (:func:`build_dataset`).

    Raises:
      ConfigError: the dataset is unknown or not built (the message names the build command),
        or ``num_classes`` disagrees with the dataset.
    """
    ds = config.dataset
    name, cfg, data_dir = ds.name, ds.builder_config, ds.data_dir
    try:
        source = sources.open_tfds_source(name, ds.train_split, data_dir=data_dir, builder_config=cfg)
    except sources.DatasetNotBuiltError as exc:
        if not ds.auto_build:
            raise ConfigError(f"dataset not available: {exc}") from None
        build_dataset(name, cfg, data_dir)
        source = sources.open_tfds_source(name, ds.train_split, data_dir=data_dir, builder_config=cfg)
    except Exception as exc:  # unknown split etc.
        raise ConfigError(f"cannot open dataset {name}/{cfg} split {ds.train_split!r}: {exc}") from None
    num = _label_classes(name, cfg, data_dir)
    nc = ds.num_classes
    if nc is not None and num is not None and nc != num:
        raise ConfigError(f"dataset.num_classes={nc} but {name}/{cfg} has {num} classes; "
                          f"set --config.dataset.num_classes={num} (or None)")
    if num is None:
        if nc is None:
            raise ConfigError(f"cannot read the class count of {name}/{cfg}; set --config.dataset.num_classes")
        num = nc
    del source
    return int(num)


def build_dataset(name: str, cfg: str | None, data_dir: str | None) -> None:
    """Builds a dataset that needs no download (``dataset.auto_build``, e.g. the embedded
    ``synthetic_pose3d``): process 0 prepares it, the others wait for it."""
    if jax.process_index() == 0:
        log.info("building %s/%s (dataset.auto_build) in %s", name, cfg, data_dir or "the TFDS default data_dir")
        registry.builder(name, cfg, data_dir).download_and_prepare()
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"build {name}/{cfg}")


def _label_classes(name: str, cfg: str | None, data_dir: str | None) -> int | None:
    try:
        return int(registry.builder(name, cfg, data_dir).info.features["label"].num_classes)
    except Exception:
        return None


__all__ = ["build_dataset", "resolve_num_classes"]
