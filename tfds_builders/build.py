"""Command line: build (download_and_prepare) one of the fgpose TFDS datasets.

Examples::

    # The embedded synthetic dataset (no download), default config `tiny`:
    python -m tfds_builders.build synthetic_pose3d --data_dir ~/tensorflow_datasets

    # A real dataset from a manual directory laid out like the release (see the builder's
    # MANUAL_DOWNLOAD_INSTRUCTIONS, printed by --instructions):
    python -m tfds_builders.build stanford_cars3d --config v2 --manual_dir /data/finegrained_pose

    # A custom variant (needs its own --name): smaller fields, coarser meshes.
    python -m tfds_builders.build stanford_cars3d --config v2 --name v2_f320 \\
        --set field_max_side=320 --set max_faces=8000 --manual_dir /data/finegrained_pose

Prints the skip report (also written to ``skipped.json`` in the dataset directory) as JSON.
Bad records are skipped and counted there; a build that cannot start (an unsafe or broken
annotation pickle, e.g. one that would run code, or missing label files) prints one
``error: ...`` line, exits with status 2 and removes every directory it created (the
dataset's, its ``.config``, ``downloads``), so that nothing is left behind.
Equivalent to ``tfds.builder(name, data_dir=..., config=...).download_and_prepare(
download_config=tfds.download.DownloadConfig(manual_dir=...))``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import shutil
import sys


def _value(text: str):
    if text.lower() in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tfds_builders.build", description=__doc__.split("\n\n")[0])
    p.add_argument("name", choices=["stanford_cars3d", "compcars3d", "fgvc_aircraft3d", "synthetic_pose3d"])
    p.add_argument("--config", help="builder config (default: the builder's default)")
    p.add_argument("--data_dir", help="TFDS data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    p.add_argument("--manual_dir", help="manual directory of the real datasets")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a config field (e.g. field_max_side=320, max_faces=8000, num_train=100)")
    p.add_argument("--name", dest="config_name", help="name of the custom config made by --set (required with --set)")
    p.add_argument("--file_format", help="array_record (default) or tfrecord")
    p.add_argument("--instructions", action="store_true", help="print the manual download instructions and exit")
    args = p.parse_args(argv)

    import tensorflow_datasets as tfds  # noqa: PLC0415

    # Registers the builders (imported one by one: also works when a stale editable install
    # makes `tfds_builders` a namespace package whose __init__ does not run).
    import tfds_builders.compcars3d  # noqa: F401,PLC0415
    import tfds_builders.fgvc_aircraft3d  # noqa: F401,PLC0415
    import tfds_builders.stanford_cars3d  # noqa: F401,PLC0415
    import tfds_builders.synthetic_pose3d  # noqa: F401,PLC0415
    from fgpose.annotations import AnnotationError  # noqa: PLC0415
    from tfds_builders.base import MissingLabelsError  # noqa: PLC0415

    cls = tfds.builder_cls(args.name)
    if args.instructions:
        print(cls.MANUAL_DOWNLOAD_INSTRUCTIONS or f"{args.name} needs no download.")
        return 0
    config = cls.builder_configs[args.config or cls.DEFAULT_BUILDER_CONFIG_NAME]
    if args.set:
        if not args.config_name:
            p.error("--set makes a custom config: give it a --name different from the predefined ones")
        fields = {f.name for f in dataclasses.fields(config)}
        overrides = {}
        for item in args.set:
            key, _, value = item.partition("=")
            if key not in fields:
                p.error(f"unknown config field {key!r}; fields: {sorted(fields)}")
            overrides[key] = _value(value)
        config = dataclasses.replace(config, name=args.config_name, **overrides)
    kwargs = {"data_dir": args.data_dir, "config": config}
    if args.file_format:
        kwargs["file_format"] = args.file_format
    builder = tfds.builder(args.name, **kwargs)
    made = _paths_a_build_creates(builder)
    existed = {path for path in made if path.exists()}
    try:
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=args.manual_dir))
    except BaseException as exc:
        for path in made:  # deepest first
            if path not in existed and path.exists():
                shutil.rmtree(path, ignore_errors=True)
        if isinstance(exc, (AnnotationError, MissingLabelsError)):
            print(f"error: {exc}".splitlines()[0], file=sys.stderr)
            return 2
        raise
    print(json.dumps({"data_path": str(builder.data_path), **builder.skipped}, indent=2))
    return 0


def _paths_a_build_creates(builder) -> list[pathlib.Path]:
    """The directories ``download_and_prepare`` may create, deepest first: the dataset's
    version and config directories, its ``.config`` metadata, the builder's directory, the
    default ``downloads/extracted`` and ``downloads``, and the data dir itself."""
    root = pathlib.Path(builder.data_dir_root)
    version_dir = pathlib.Path(builder.data_dir)
    return [
        version_dir,
        version_dir.parent,
        root / builder.name / ".config",
        root / builder.name,
        root / "downloads" / "extracted",
        root / "downloads",
        root,
    ]


if __name__ == "__main__":
    sys.exit(main())
