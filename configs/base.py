"""Every default as it is (:func:`fgpose.config.base_config`): R50-FPN at 800x1344 on
StanfordCars3D v1 annotations, Detectron's 1x schedule (90k steps of 16 images).

Every field can be overridden on the command line, e.g.
``python -m fgpose.train --config configs/base.py --config.train.num_steps=10``.
"""

from __future__ import annotations

import ml_collections

from fgpose.config import base_config


def get_config() -> ml_collections.ConfigDict:
    return base_config()
