"""FGVC-Aircraft3D (100 aircraft classes, 6667 train / 3333 test), R50-FPN at the paper's size.

Same recipe as configs/stanford_cars3d.py (~6.7k images -> 15k steps at 16 images, ~36 epochs).
"""

from __future__ import annotations

import ml_collections

from fgpose.config import base_config


def get_config() -> ml_collections.ConfigDict:
    c = base_config()
    c.dataset.name = "fgvc_aircraft3d"
    c.dataset.builder_config = "v2"
    c.dataset.num_classes = 100
    c.train.num_steps = 15_000
    c.optim.decay_steps = (10_000, 13_300)
    c.train.eval_every = 2_500
    c.train.checkpoint_every = 1_000
    return c
