"""The shipped pose prior (``fgpose/synthetic/pose_prior.json``, package data).

The literal numbers below were copied from the generated module the JSON file replaced
(``fgpose/synthetic/_prior_data.py``, written by ``scripts/fit_pose_prior.py`` from the
release's train annotations); they must come back bit for bit.
"""

from __future__ import annotations

import pathlib
import tomllib

import numpy as np
import pytest

from fgpose.synthetic import poses as P

ROOT = pathlib.Path(__file__).resolve().parents[1]

# (category, attribute, index, value) as printed in the former _prior_data.py.
LITERALS = [
    ("car", "quantiles", ("log_f", 0), 5.070455666551577),
    ("car", "quantiles", ("log_f", 1), 5.3507011851148),
    ("car", "quantiles", ("log_f", 2), 5.4776709683770415),
    ("car", "quantiles", ("log_scale", 0), 4.882007565624486),
    ("car", "quantiles", ("azimuth", 100), 1.9578805654921045),
    ("car", "quantiles", ("v", 199), 54.29500000000007),
    ("car", "quantiles", ("v", 200), 62.0),
    ("car", "correlation", (3, 4), 0.41491852678925223),
    ("airplane", "quantiles", ("elevation", 200), 0.6448645859183404),
    ("airplane", "correlation", (0, 1), 0.16500167853959558),
    ("airplane", "correlation", (0, 6), 0.038628961550372404),
    ("airplane", "correlation", (6, 0), 0.0386289615503724),  # the fit's matrix is not exactly symmetric
    ("airplane", "probs", (6,), 0.030000000000000002),
]


def _value(prior: P.PosePrior, attribute: str, index) -> float:
    if attribute == "quantiles":
        name, i = index
        return float(prior.quantiles[P.PRIOR_VARIABLES.index(name), i])
    return float(getattr(prior, attribute)[index])


@pytest.mark.parametrize("category,attribute,index,expected", LITERALS)
def test_shipped_prior_holds_the_fitted_floats_exactly(category, attribute, index, expected):
    got = _value(P.default_prior(category), attribute, index)
    assert got.hex() == expected.hex(), (got, expected)


def test_shipped_prior_metadata_and_shapes():
    car, plane = P.default_prior("car"), P.default_prior("airplane")
    assert (car.num_samples, plane.num_samples) == (11942, 6667)
    assert car.sources == ("StanfordCars train v2", "CompCars train v1")
    assert plane.sources == ("FGVC_Aircraft train v2",)
    for prior in (car, plane):
        assert prior.probs.dtype == np.float64 and prior.probs.shape == (201,)
        np.testing.assert_array_equal(prior.probs, P.PROBS)
        assert prior.quantiles.shape == (7, 201) and prior.correlation.shape == (7, 7)
        assert np.all(np.diff(prior.quantiles, axis=1) >= 0)  # quantile tables are monotone
        np.testing.assert_allclose(np.diag(prior.correlation), 1.0, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="unknown category"):
        P.default_prior("boat")


def test_json_round_trip_is_bit_exact():
    rng = np.random.default_rng(0)
    poses = np.column_stack([rng.uniform(-7, 7, (50, 3)), rng.uniform(1, 9, 50), rng.uniform(100, 3000, 50),
                             rng.normal(0, 20, (50, 2))])
    priors = {"car": P.fit_prior(poses, "car", ("synthetic",))}
    back = P.priors_from_json(P.priors_to_json(priors))["car"]
    for field in ("probs", "quantiles", "correlation"):
        a, b = getattr(priors["car"], field), getattr(back, field)
        assert a.dtype == b.dtype and np.array_equal(a.view(np.uint64), b.view(np.uint64)), field
    assert (back.category, back.num_samples, back.sources) == ("car", 50, ("synthetic",))


def test_prior_file_is_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert P.PRIOR_FILE in config["tool"]["setuptools"]["package-data"]["fgpose.synthetic"]
    assert (ROOT / "fgpose" / "synthetic" / P.PRIOR_FILE).is_file()
