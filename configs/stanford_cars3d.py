"""StanfordCars3D (196 car classes, 8144 train / 8041 test), R50-FPN at the paper's input size.

The paper trains its pose network on top of Detectron's Mask R-CNN R50-FPN. Detectron resizes
the shorter side to 800 pixels with the longer side at most 1333; fgpose uses a fixed padded
input frame instead (static shapes for jit), (800, 1344) = the 800x1333 landscape box rounded
up to a multiple of 32. A landscape photo fills it like Detectron's resize; a portrait photo
is limited by the height (shorter side < 800). Schedule: Detectron 1x scaled to the dataset
(~8k images: 18k steps at 16 images = ~35 epochs), decay at 2/3 and 8/9 of training.

Build the data first: see fgpose/train.py's error message (or README) for the build command.
"""

from __future__ import annotations

import ml_collections

from fgpose.config import base_config


def get_config() -> ml_collections.ConfigDict:
    c = base_config()
    c.dataset.name = "stanford_cars3d"
    c.dataset.builder_config = "v2"  # refined annotations (v1: the human ones)
    c.dataset.num_classes = 196
    c.train.num_steps = 18_000
    c.optim.decay_steps = (12_000, 16_000)
    c.train.eval_every = 3_000
    c.train.checkpoint_every = 1_000
    return c
