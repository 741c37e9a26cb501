"""Which JAX device refinement runs on (the ``--device`` choice of the refine tools)."""

from __future__ import annotations

import jax

DEVICES = ("default", "cpu", "gpu")
"""``cpu``: force the CPU (like ``JAX_PLATFORMS=cpu``); ``gpu``: require a GPU; ``default``:
JAX's choice (a GPU when present)."""


def select_device(name: str) -> None:
    """Sets the JAX platform for ``name`` in :data:`DEVICES`; call before any JAX computation
    (importing JAX is fine: its backends start on first use).

    Raises:
      ValueError: ``gpu`` without a GPU available to JAX.
    """
    if name == "cpu":
        jax.config.update("jax_platforms", "cpu")  # effective if JAX is not initialised yet
        jax.config.update("jax_default_device", jax.devices("cpu")[0])
    elif name == "gpu":
        try:
            gpus = jax.devices("gpu")
        except RuntimeError as err:
            raise ValueError(f"--device gpu: no GPU available to JAX ({err})") from None
        jax.config.update("jax_default_device", gpus[0])
