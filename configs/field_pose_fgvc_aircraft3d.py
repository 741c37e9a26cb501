"""Pose-from-field pre-training on the fgvc_aircraft3d CAD pool (the release's ShapeNet model of each of
its 100 classes, from ``$FGPOSE_RELEASE_DIR``) at poses of its category's release-fitted prior.

``python -m fgpose.train --config configs/field_pose_fgvc_aircraft3d.py --workdir runs/field_pose_fgvc_aircraft3d``;
``configs/fgvc_aircraft3d_field.py`` loads the result (``model.field.pose_checkpoint``).
"""

from __future__ import annotations

import ml_collections

from fgpose.config import field_pose_base_config


def get_config() -> ml_collections.ConfigDict:
    c = field_pose_base_config()
    c.dataset.name = "fgvc_aircraft3d"
    c.dataset.builder_config = "v2"
    c.dataset.num_classes = 100
    return c
