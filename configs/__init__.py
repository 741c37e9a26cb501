"""Experiment configs: one ``get_config()`` file per experiment, built on
:func:`fgpose.config.base_config` (every default lives there, written once).

``python -m fgpose.train --config configs/<name>.py`` loads a file by path; a config that
builds on another experiment's imports it as ``configs.<name>`` (the repository root is on
``sys.path`` when running from it, as the README's commands do).
"""
