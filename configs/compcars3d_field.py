"""CompCars3D with the location-field branch: ``configs/compcars3d.py`` plus the field head and
the pose-from-field network of
``python -m fgpose.train --config configs/field_pose_compcars3d.py --workdir runs/field_pose_compcars3d``.
"""

from __future__ import annotations

import ml_collections

from fgpose.config import base_config, enable_field


def get_config() -> ml_collections.ConfigDict:
    c = base_config()
    c.dataset.name = "compcars3d"
    c.dataset.builder_config = "v1"  # the release's only annotations of CompCars
    c.dataset.num_classes = 113
    c.train.num_steps = 9_000
    c.optim.decay_steps = (6_000, 8_000)
    c.train.eval_every = 1_500
    c.train.checkpoint_every = 500
    return enable_field(c, "compcars3d")
