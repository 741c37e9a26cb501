"""StanfordCars3D with the location-field branch (the paper's "w./ Field" row of Table 2):
``configs/stanford_cars3d.py`` plus the field head (Mask R-CNN-sized: 4 x 256 convs, 28 x 28)
and the pose-from-field network of
``python -m fgpose.train --config configs/field_pose_stanford_cars3d.py --workdir runs/field_pose_stanford_cars3d``
(``model.field.pose_checkpoint``; frozen).
"""

from __future__ import annotations

import ml_collections

from fgpose.config import base_config, enable_field


def get_config() -> ml_collections.ConfigDict:
    c = base_config()
    c.dataset.name = "stanford_cars3d"
    c.dataset.builder_config = "v2"  # refined annotations (v1: the human ones)
    c.dataset.num_classes = 196
    c.train.num_steps = 18_000
    c.optim.decay_steps = (12_000, 16_000)
    c.train.eval_every = 3_000
    c.train.checkpoint_every = 1_000
    return enable_field(c, "stanford_cars3d")
