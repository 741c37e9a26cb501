"""Location-field configs (issue 13): each ``*_field`` config is its baseline with only the field
branch turned on, the ``field_pose_*`` pre-training configs validate, and a ``*_field`` run
whose pose-from-field checkpoint is missing fails at start naming the command that makes it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.test_configs import ROOT, load

FIELD_CONFIGS = {"synthetic_field": ("synthetic", "synthetic"),
                 "stanford_cars3d_field": ("stanford_cars3d", "stanford_cars3d"),
                 "compcars3d_field": ("compcars3d", "compcars3d"),
                 "compcars3d_ft_field": ("compcars3d_ft", "compcars3d"),
                 "fgvc_aircraft3d_field": ("fgvc_aircraft3d", "fgvc_aircraft3d")}
FIELD_POSE_CONFIGS = {"field_pose_synthetic": "synthetic_pose3d", "field_pose_stanford_cars3d": "stanford_cars3d",
                      "field_pose_compcars3d": "compcars3d", "field_pose_fgvc_aircraft3d": "fgvc_aircraft3d"}


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


@pytest.mark.parametrize("name", sorted(FIELD_CONFIGS))
def test_field_config_is_its_baseline_with_the_field_on(name):
    baseline, run = FIELD_CONFIGS[name]
    c, b = _flat(load(name).to_dict()), _flat(load(baseline).to_dict())
    diff = {k for k in c if c[k] != b.get(k)}
    expected = {"model.field.enabled", "data.with_fields", "model.field.pose_checkpoint"}
    if name == "synthetic_field":  # a CPU-sized head (the paper's is 4 x 256)
        expected |= {"model.field.num_conv", "model.field.width"}
    if name == "compcars3d_ft_field":
        expected.add("train.init_checkpoint")
        assert c["train.init_checkpoint"] == "runs/stanford_cars3d_field"
    assert diff == expected, diff
    assert c["model.field.enabled"] is True and c["data.with_fields"] is True
    assert c["model.field.pose_checkpoint"] == f"runs/field_pose_{run}"
    assert c["model.field.finetune_pose_net"] is False  # frozen, as in the paper
    assert (ROOT / "configs" / f"field_pose_{run}.py").exists()


def test_baseline_default_has_the_field_branch_off():
    for name in ("base", "synthetic", "stanford_cars3d", "tiny"):
        c = load(name)
        assert c.model.field.enabled is False and c.data.with_fields is False and c.task == "detector"


@pytest.mark.parametrize("name", sorted(FIELD_POSE_CONFIGS))
def test_field_pose_configs_validate(name):
    from fgpose.config import validate_config

    c = load(name)
    assert c.task == "field_pose" and c.dataset.name == FIELD_POSE_CONFIGS[name]
    validate_config(c, num_devices=1, process_count=1)
    # The network it trains is the one the matching *_field config builds.
    field = load({"synthetic_pose3d": "synthetic_field"}.get(c.dataset.name, f"{c.dataset.name}_field")).model.field
    assert c.model.field.size == field.size and c.model.field.pose_net.to_dict() == field.pose_net.to_dict()


@pytest.mark.parametrize("name", sorted(FIELD_CONFIGS))
def test_missing_pose_checkpoint_names_the_command(name, tmp_path):
    from fgpose.config import ConfigError, validate_config

    c = load(name)
    c.train.init_checkpoint = None
    c.model.field.pose_checkpoint = str(tmp_path / "nothing")
    run = FIELD_CONFIGS[name][1]
    with pytest.raises(ConfigError) as info:
        validate_config(c, num_devices=1, process_count=1)
    assert f"python -m fgpose.train --config configs/field_pose_{run}.py" in str(info.value)
    validate_config(c, num_devices=1, process_count=1, training=False)  # evaluation: in the run's checkpoint
    c.model.field.pose_checkpoint = str(tmp_path)  # exists: valid
    validate_config(c, num_devices=1, process_count=1)
    c.model.field.pose_checkpoint = None  # frozen random network: refused, with the command
    with pytest.raises(ConfigError, match=f"configs/field_pose_{run}.py"):
        validate_config(c, num_devices=1, process_count=1)
    c.model.field.finetune_pose_net = True  # trained from scratch instead: allowed
    validate_config(c, num_devices=1, process_count=1)


def test_cli_missing_pose_checkpoint_fails_before_work(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-m", "fgpose.train", "--config", "configs/synthetic_field.py", "--workdir",
                        str(tmp_path / "w"), f"--config.model.field.pose_checkpoint={tmp_path / 'missing'}"],
                       cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "python -m fgpose.train --config configs/field_pose_synthetic.py" in r.stderr, r.stderr[-3000:]
    assert not (tmp_path / "w").exists()  # failed before doing anything
