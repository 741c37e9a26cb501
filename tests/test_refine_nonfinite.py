"""The greedy search never accepts a candidate that is not a pose (issue 14, item 1): a
non-finite parameter, d <= 0 or f <= 0, whatever score the objective gives it."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from fgpose.refine import search


def _evaluate_rewarding(bad):
    """A stand-in objective: 0.5 for every candidate, 1.0 (or NaN) for the bad ones."""
    def evaluate(cands, active):
        d, f = cands[..., 3], cands[..., 4]
        invalid = (d <= 0) | (f <= 0) | ~jnp.all(jnp.isfinite(cands), axis=-1)
        return jnp.where(invalid, bad, 0.5)
    return evaluate


@pytest.mark.parametrize("schedule", ["paper", "release", "parallel"])
@pytest.mark.parametrize("bad", [1.0, float("nan")])
def test_candidates_that_are_not_poses_are_never_accepted(schedule, bad):
    config = search.SearchConfig(schedule=schedule, max_sweeps=3)
    # d = 0.005 and f = 5 lie within one step (0.01, 10 px) of zero; u = 3e38 overflows to inf.
    params = jnp.asarray([[0.1, 0.2, 0.0, 0.005, 5.0, 0.0, 0.0],
                          [0.1, 0.2, 0.0, 1.0, 300.0, 3.0e38, 0.0]], jnp.float32)
    out = search._greedy(_evaluate_rewarding(bad), params, jnp.full((2,), 0.5), 1.0, 0.125, config,
                         jnp.zeros((2,), bool))
    final = np.asarray(out["params"])
    assert np.all(np.isfinite(final)) and np.all(final[:, 3] > 0) and np.all(final[:, 4] > 0)
    if schedule != "release":  # 'release' also takes equal scores, so it wanders among real poses
        np.testing.assert_array_equal(final, np.asarray(params))  # nothing scored better among real poses
        assert int(np.asarray(out["moves"]).sum()) == 0


def test_real_poses_still_move():
    """The guard changes nothing for real poses: a stand-in rewarding larger d moves d up."""
    config = search.SearchConfig(schedule="paper", max_sweeps=2)
    params = jnp.asarray([[0.1, 0.2, 0.0, 1.0, 300.0, 0.0, 0.0]], jnp.float32)
    out = search._greedy(lambda c, a: c[..., 3] / 10.0, params, params[:, 3] / 10.0, 1.0, 0.125, config,
                         jnp.zeros((1,), bool))
    assert float(out["params"][0, 3]) > 1.0 and int(out["moves"][0]) > 0
