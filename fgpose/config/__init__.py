"""Experiment configs: the defaults, their checks and the dataset they name.

* :mod:`fgpose.config.defaults`: :func:`base_config`, every default written once (the
  experiment files ``configs/<name>.py`` start from it);
* :mod:`fgpose.config.checks`: :func:`validate_config` and :class:`ConfigError`;
* :mod:`fgpose.config.files`: :func:`load_config_file` / :func:`config_beside` (an experiment
  file by path, for variants of an experiment);
* :mod:`fgpose.config.dataset`: :func:`resolve_num_classes` (the class count, building a
  missing local dataset on first use through :mod:`fgpose.data.registry`).
"""

from fgpose.config.checks import ConfigError, validate_config
from fgpose.config.dataset import build_dataset, resolve_num_classes
from fgpose.config.files import config_beside, load_config_file
from fgpose.config.defaults import (FIELD_LOSS_TERMS, LOSS_TERMS, base_config, enable_field, field_pose_base_config, model_config,
                                   tiny_model_config)

__all__ = [
    "ConfigError",
    "FIELD_LOSS_TERMS",
    "LOSS_TERMS",
    "base_config",
    "build_dataset",
    "config_beside",
    "enable_field",
    "field_pose_base_config",
    "load_config_file",
    "model_config",
    "resolve_num_classes",
    "tiny_model_config",
    "validate_config",
]
