"""Pose-from-field pre-training for ``synthetic_pose3d/small`` (the CPU proof of the field branch).

Fields rendered from the 14 procedural class meshes at poses of the release-fitted prior of
each class's category, augmented like field-head output (``config.field_pose.augment``).
Shorter than the real datasets' runs (a 14-mesh pool; 2 CPU cores):
``python -m fgpose.train --config configs/field_pose_synthetic.py --workdir runs/field_pose_synthetic``,
then ``configs/synthetic_field.py`` loads it.
"""

from __future__ import annotations

import ml_collections

from fgpose.config import field_pose_base_config


def get_config() -> ml_collections.ConfigDict:
    c = field_pose_base_config()
    c.dataset.name = "synthetic_pose3d"
    c.dataset.builder_config = "small"
    c.field_pose.max_faces = 1500
    c.field_pose.render_hw = (56, 56)
    c.optim.warmup_steps = 100
    c.optim.decay_steps = (1_600, 1_900)
    c.train.global_batch_size = 32
    c.train.num_steps = 2_000
    c.train.eval_every = 0
    c.train.checkpoint_every = 500
    c.train.keep_checkpoints = 2
    return c
