"""CompCars3D fine-tuned from a StanfordCars3D field run, with the location-field branch (the
paper's transfer setting, "w./ Field").

Set ``--config.train.init_checkpoint=<workdir of a configs/stanford_cars3d_field.py run>``; its
field head and pose-from-field network are loaded with the rest, then the pose-from-field
network is replaced by the CompCars3D pre-training run's
(``python -m fgpose.train --config configs/field_pose_compcars3d.py --workdir runs/field_pose_compcars3d``),
which saw this dataset's CAD pool.
"""

from __future__ import annotations

import ml_collections

from fgpose.config import config_beside, enable_field


def get_config() -> ml_collections.ConfigDict:
    c = enable_field(config_beside(__file__, "compcars3d_ft"), "compcars3d")
    c.train.init_checkpoint = "runs/stanford_cars3d_field"  # override with the real workdir
    return c
