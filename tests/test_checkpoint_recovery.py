"""A damaged latest checkpoint never blocks a resume (issue 14, item 7).

The run falls back to the newest checkpoint that restores, says which, and continues exactly
as an uninterrupted run from that step would; the damaged step is moved to
``checkpoints.damaged/`` so the run can write it again.
"""

from __future__ import annotations

import logging
import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import test_train as tt  # noqa: E402

from fgpose.checkpoint import CheckpointManager, CheckpointRestoreError  # noqa: E402


def _damage(step_dir: pathlib.Path, how: str) -> int:
    """Damages every data file of a checkpoint step; returns how many files were touched."""
    rng = np.random.default_rng(0)
    files = [p for p in step_dir.rglob("*") if p.is_file() and p.stat().st_size > 0]
    for p in files:
        data = p.read_bytes()
        if how == "truncate":
            p.write_bytes(data[: len(data) // 3])
        else:
            p.write_bytes(rng.integers(0, 256, len(data), dtype=np.uint8).tobytes())
    return len(files)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["truncate", "random"])
def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog, how):
    ref_losses, ref_params, _ = tt.run_training(tmp_path / "ref", tt.tiny_config())  # 6 steps, no checkpoints reused
    tt.run_training(tmp_path / "run", tt.tiny_config())
    ckpts = tmp_path / "run" / "checkpoints"
    mgr = CheckpointManager(ckpts)
    assert mgr.all_steps() == [3, 6]
    mgr.close()
    assert _damage(ckpts / "6", how) > 0

    # The finished run is asked for 6 steps again: it cannot restore 6, resumes at 3 and redoes 4..6.
    with caplog.at_level(logging.WARNING, logger="fgpose.checkpoint"):
        losses, params, _ = tt.run_training(tmp_path / "run", tt.tiny_config())
    text = caplog.text
    assert "checkpoint of step 6" in text and "does not restore" in text
    assert "resumed from the checkpoint of step 3" in text
    assert sorted(losses) == [4, 5, 6]
    for s in (4, 5, 6):
        np.testing.assert_allclose(losses[s], ref_losses[s], rtol=1e-6)
    for k in params:
        np.testing.assert_allclose(params[k], ref_params[k], rtol=1e-6, atol=1e-7, err_msg=k)
    assert (ckpts.with_name("checkpoints.damaged") / "6").is_dir()
    mgr = CheckpointManager(ckpts)
    assert mgr.all_steps() == [3, 6]  # step 6 written again, and it restores
    mgr.close()


@pytest.mark.slow
def test_no_checkpoint_restores_is_a_clear_error(tmp_path):
    tt.run_training(tmp_path, tt.tiny_config(**{"train.num_steps": 3}))
    ckpts = tmp_path / "checkpoints"
    _damage(ckpts / "3", "random")
    with pytest.raises(CheckpointRestoreError, match=r"none of the checkpoints .* restores .*step 3"):
        tt.run_training(tmp_path, tt.tiny_config(**{"train.num_steps": 3}))


@pytest.mark.slow
def test_sigint_stops_with_a_checkpoint_and_exit_status_130(tmp_path):
    """SIGINT during step 2: the loop finishes the step, writes its checkpoint and reports the
    signal; the command's status is 130 (143 for SIGTERM), 0 for a run that finished."""
    import os
    import signal

    from fgpose import train

    def log_fn(step, metrics):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    res = train.train_and_evaluate(
        tt.tiny_config(), tmp_path, model_fn=tt.standin_fn, train_iterator_fn=tt.train_iter_fn(tt.make_examples(12)),
        eval_fn=lambda s, step: None, num_classes=tt.NUM_CLASSES, progress=False, log_fn=log_fn)
    assert res["interrupted_by"] == signal.SIGINT and res["step"] in (2, 3)
    assert train.exit_status(res) == 130
    assert train.exit_status({"interrupted_by": signal.SIGTERM}) == 143
    mgr = CheckpointManager(tmp_path / "checkpoints")
    assert mgr.latest_step() == res["step"]
    mgr.close()
    finished = tt.run_training(tmp_path, tt.tiny_config())  # resumes and completes: status 0
    assert sorted(finished[0])[-1] == 6
    assert train.exit_status({"interrupted_by": None}) == 0
