"""Shared pytest fixtures and the test run's JAX compilation cache.

Tests that read the public release take its root from ``$FGPOSE_RELEASE_DIR`` through the
``release_dir`` fixture and are skipped when it is unset; everything else runs without it.
Assets that several test modules use are loaded once per session here: the release's
annotation files (:func:`release_split`), and its one car mesh as ``fgpose`` loads it
(:func:`example_car_mesh`) and as plain trimesh reads it (:func:`example_car_trimesh`, the
independent reference). Session fixtures hand out immutable values or fresh copies.

Compilation cache: XLA programs compiled by the tests (and by the CLIs they start, which
inherit the environment) are kept on disk in ``$FGPOSE_TEST_JAX_CACHE`` (default
``<rootdir>/.pytest_cache/jax``; ``0``, ``off`` or empty disable it), so a second run
reuses them instead of compiling again. Programs that compiled faster than
``$FGPOSE_TEST_JAX_CACHE_MIN_SECS`` (default 0.2 s) are not stored.

Tiers: ``pytest -m "not slow"`` skips the tests marked ``slow`` (each over ~10 s on 2 CPU
cores; see ``[tool.pytest.ini_options]`` in pyproject.toml); plain ``pytest`` runs all.
"""

from __future__ import annotations

import os
import pathlib
from typing import Callable

import numpy as np
import pytest

CACHE_ENV = "FGPOSE_TEST_JAX_CACHE"
CACHE_MIN_SECS_ENV = "FGPOSE_TEST_JAX_CACHE_MIN_SECS"
_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _compilation_cache_dir() -> str | None:
    value = os.environ.get(CACHE_ENV)
    if value is None:
        return str(_ROOT / ".pytest_cache" / "jax")
    return None if value.strip().lower() in ("", "0", "off", "false", "no") else value


def _enable_compilation_cache() -> None:
    """Points JAX's persistent compilation cache at :func:`_compilation_cache_dir`, in this
    process (``jax.config``) and in every subprocess a test starts (``JAX_*`` variables)."""
    cache_dir = _compilation_cache_dir()
    if cache_dir is None:
        return
    min_secs = os.environ.get(CACHE_MIN_SECS_ENV, "0.2")
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", cache_dir)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", min_secs)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    import jax  # noqa: PLC0415 - after the environment, so that subprocesses match

    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


_enable_compilation_cache()

from fgpose import annotations as A  # noqa: E402
from fgpose.annotations import RELEASE_DIR_ENV, release_dir as _release_dir_from_env  # noqa: E402


@pytest.fixture(scope="session")
def release_dir() -> pathlib.Path:
    """Root of the real data release (``.../finegrained_pose``), or skip the test."""
    path = _release_dir_from_env()
    if path is None:
        pytest.skip(
            f"{RELEASE_DIR_ENV} is not set: point it at the real release, "
            "e.g. ../shared/finegrained_pose"
        )
    if not path.is_dir():
        pytest.skip(f"{RELEASE_DIR_ENV}={path} is not a directory: point it at the real release")
    return path


@pytest.fixture(scope="session")
def release_split(release_dir) -> Callable[[str, str, int], dict[str, A.Annotation]]:
    """``load(dataset, split, version)``: :func:`fgpose.annotations.load_split` of the release,
    each file read once per session. Every call returns a new ``{key: Annotation}`` dict (the
    records themselves are frozen), in the file's key order."""
    cache: dict[tuple[str, str, int], dict[str, A.Annotation]] = {}

    def load(dataset: str, split: str, version: int) -> dict[str, A.Annotation]:
        key = (dataset, split, int(str(version).lstrip("vV")))
        if key not in cache:
            cache[key] = A.load_split(release_dir, *key)
        return dict(cache[key])

    return load


@pytest.fixture(scope="session")
def example_car_path(release_dir) -> pathlib.Path:
    """``CAD/02958343/<EXAMPLE_CAR_MODEL_ID>/model.obj``: the release's one car mesh (skip if absent)."""
    path = A.cad_path(release_dir, "StanfordCars", A.EXAMPLE_CAR_MODEL_ID)
    if not path.is_file():
        pytest.skip(f"the release at {release_dir} lacks its car mesh {path}")
    return path


@pytest.fixture(scope="session")
def example_car_mesh(example_car_path):
    """The release's car as ``fgpose.mesh.load_mesh(path, cache_dir=False)`` gives it: the full
    29,226 triangles, model units, an immutable :class:`fgpose.mesh.Mesh`."""
    from fgpose.mesh import load_mesh  # noqa: PLC0415

    return load_mesh(example_car_path, cache_dir=False)


@pytest.fixture(scope="session")
def example_car_trimesh(example_car_path):
    """The release's car read by trimesh alone (``process=False``), independent of
    :mod:`fgpose.mesh`: ``(vertices (V, 3) float64, faces (F, 3) int64)``, read-only."""
    trimesh = pytest.importorskip("trimesh")
    mesh = trimesh.load(str(example_car_path), force="mesh", process=False)
    vertices = np.array(mesh.vertices, np.float64)
    faces = np.array(mesh.faces, np.int64)
    vertices.flags.writeable = False
    faces.flags.writeable = False
    return vertices, faces

