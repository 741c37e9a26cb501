"""FGVC-Aircraft3D with the location-field branch: ``configs/fgvc_aircraft3d.py`` plus the
field head and the pose-from-field network of
``python -m fgpose.train --config configs/field_pose_fgvc_aircraft3d.py --workdir runs/field_pose_fgvc_aircraft3d``.
"""

from __future__ import annotations

import ml_collections

from fgpose.config import base_config, enable_field


def get_config() -> ml_collections.ConfigDict:
    c = base_config()
    c.dataset.name = "fgvc_aircraft3d"
    c.dataset.builder_config = "v2"
    c.dataset.num_classes = 100
    c.train.num_steps = 15_000
    c.optim.decay_steps = (10_000, 13_300)
    c.train.eval_every = 2_500
    c.train.checkpoint_every = 1_000
    return enable_field(c, "fgvc_aircraft3d")
