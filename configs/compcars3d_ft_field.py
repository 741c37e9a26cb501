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

from fgpose.config import base_config, enable_field


def get_config() -> ml_collections.ConfigDict:
    c = base_config()
    c.dataset.name = "compcars3d"
    c.dataset.builder_config = "v1"  # the release's only annotations of CompCars
    c.dataset.num_classes = 113
    c.optim.base_lr = 0.002
    c.optim.warmup_steps = 100
    c.train.num_steps = 4_000
    c.optim.decay_steps = (3_000,)
    c.train.eval_every = 1_000
    c.train.checkpoint_every = 500
    c.train.init_checkpoint = "runs/stanford_cars3d_field"  # override with the real workdir
    return enable_field(c, "compcars3d")
