"""The CPU proof of the location-field branch: ``configs/synthetic.py`` (same data, model, seed
and steps) with the field branch on (``fgpose.config.enable_field``).

First pre-train the pose-from-field network
(``python -m fgpose.train --config configs/field_pose_synthetic.py --workdir runs/field_pose_synthetic``),
then ``python -m fgpose.train --config configs/synthetic_field.py --workdir DIR``. The field
head (2 convs of 32 channels, 28x28 output) runs on 14x14 RoI features of the 8 foreground
slots per image; the pre-trained network is frozen. Measured numbers: docs/field_branch.md.
"""

from __future__ import annotations

import ml_collections

from fgpose.config import config_beside, enable_field


def get_config() -> ml_collections.ConfigDict:
    c = enable_field(config_beside(__file__, "synthetic"), "synthetic")
    # A CPU-sized field head: Mask R-CNN's 4 x 256 convs on the 64 foreground-slot RoIs of a
    # batch (8 images x 8 slots) cost ~130 GMAC per step, ~20x the whole baseline step.
    c.model.field.num_conv = 2
    c.model.field.width = 32
    return c
