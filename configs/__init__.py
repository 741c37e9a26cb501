"""Experiment configs: one flat ``get_config()`` file per experiment on
:func:`fgpose.config.base_config` (every default lives there, written once).

Each file imports only ``fgpose``, so ``--config configs/<name>.py`` loads it by path from any
directory; tests import them as ``configs.<name>`` from the repository root.
"""
