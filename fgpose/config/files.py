"""Loading an experiment file ``configs/<name>.py`` by path, as ``--config`` does.

A variant of an experiment (``configs/synthetic_field.py`` is ``configs/synthetic.py`` with the
location-field branch on) loads its base file with :func:`config_beside` and changes only what
differs, so no setting is written twice and no ``sys.path`` edit is needed: the files load the
same way from any working directory.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib

import ml_collections


def load_config_file(path: str | os.PathLike) -> ml_collections.ConfigDict:
    """``get_config()`` of the experiment file at ``path`` (a fresh ConfigDict each call)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no experiment config file {path}")
    spec = importlib.util.spec_from_file_location(f"_fgpose_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def config_beside(this_file: str | os.PathLike, name: str) -> ml_collections.ConfigDict:
    """``get_config()`` of ``<name>.py`` in the directory of ``this_file`` (pass ``__file__``)."""
    return load_config_file(pathlib.Path(this_file).resolve().with_name(f"{name}.py"))
