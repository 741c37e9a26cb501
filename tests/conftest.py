"""Shared pytest fixtures.

Tests that read the public release take its root from ``$FGPOSE_RELEASE_DIR`` through the
``release_dir`` fixture and are skipped when it is unset; everything else runs without it.
"""

from __future__ import annotations

import pathlib

import pytest

from fgpose.annotations import RELEASE_DIR_ENV, release_dir as _release_dir_from_env


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
