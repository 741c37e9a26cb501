"""StanfordCars3D with the location-field branch (the paper's "w./ Field" row of Table 2):
``configs/stanford_cars3d.py`` plus the field head (Mask R-CNN-sized: 4 x 256 convs, 28 x 28)
and the pose-from-field network of
``python -m fgpose.train --config configs/field_pose_stanford_cars3d.py --workdir runs/field_pose_stanford_cars3d``
(``model.field.pose_checkpoint``; frozen).
"""

from __future__ import annotations

import ml_collections

from fgpose.config import config_beside, enable_field


def get_config() -> ml_collections.ConfigDict:
    c = enable_field(config_beside(__file__, "stanford_cars3d"), "stanford_cars3d")
    return c
