"""CompCars3D (113 car classes, 3798 train / 1898 test; v1 annotations only), R50-FPN.

Same recipe as configs/stanford_cars3d.py (paper input size, Detectron 1x scaled to the
dataset size: ~3.8k images -> 9k steps at 16 images, ~38 epochs).
"""

from __future__ import annotations

import ml_collections

from fgpose.config import base_config


def get_config() -> ml_collections.ConfigDict:
    c = base_config()
    c.dataset.name = "compcars3d"
    c.dataset.builder_config = "v1"  # the release's only annotations of CompCars
    c.dataset.num_classes = 113
    c.train.num_steps = 9_000
    c.optim.decay_steps = (6_000, 8_000)
    c.train.eval_every = 1_500
    c.train.checkpoint_every = 500
    return c
