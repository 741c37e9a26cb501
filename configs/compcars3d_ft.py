"""CompCars3D fine-tuned from a StanfordCars3D run (the paper's transfer setting).

Set ``--config.train.init_checkpoint=<workdir of a configs/stanford_cars3d.py run>``. All
parameters whose shapes match are loaded; the class-dependent layers (196 vs 113 classes:
the box head's classifier, and any class-specific pose outputs) are re-initialised. The data
are those of configs/compcars3d.py, with a shorter schedule, a 10x smaller LR than training
from ImageNet, and a short warm-up.
"""

from __future__ import annotations

import ml_collections

from fgpose.config import base_config


def get_config() -> ml_collections.ConfigDict:
    c = base_config()
    c.dataset.name = "compcars3d"
    c.dataset.builder_config = "v1"  # the release's only annotations of CompCars
    c.dataset.num_classes = 113
    c.train.init_checkpoint = "runs/stanford_cars3d"  # override with the real workdir
    c.optim.base_lr = 0.002
    c.optim.warmup_steps = 100
    c.train.num_steps = 4_000
    c.optim.decay_steps = (3_000,)
    c.train.eval_every = 1_000
    c.train.checkpoint_every = 500
    return c
