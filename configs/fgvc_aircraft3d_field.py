"""FGVC-Aircraft3D with the location-field branch: ``configs/fgvc_aircraft3d.py`` plus the
field head and the pose-from-field network of
``python -m fgpose.train --config configs/field_pose_fgvc_aircraft3d.py --workdir runs/field_pose_fgvc_aircraft3d``.
"""

from __future__ import annotations

import ml_collections

from fgpose.config import config_beside, enable_field


def get_config() -> ml_collections.ConfigDict:
    c = enable_field(config_beside(__file__, "fgvc_aircraft3d"), "fgvc_aircraft3d")
    return c
