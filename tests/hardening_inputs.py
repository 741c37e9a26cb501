"""Adversarial inputs shared by the tests/test_hardening_*.py files (issue 14).

Pickles are assembled opcode by opcode where :mod:`pickle` itself cannot write them (a list
nested 200,000 deep overflows the C pickler's recursion limit).
"""

from __future__ import annotations

import pickle
import struct

from fgpose.annotations import EXAMPLE_CAR_MODEL_ID

GOOD = {
    "model_id": EXAMPLE_CAR_MODEL_ID,
    "azimuth": 2.1869037199900627,
    "elevation": 0.04712388980385082,
    "theta": 0.0,
    "distance": 0.9999999999999784,
    "f": 346.4101615137755,
    "u": -20.0,
    "v": 10.0,
}
"""A valid release record (``cars_train/00001.jpg``'s v1 annotation)."""

BOX = (
    "v -0.3 -0.15 -0.2\nv 0.3 -0.15 -0.2\nv 0.3 0.15 -0.2\nv -0.3 0.15 -0.2\n"
    "v -0.3 -0.15 0.2\nv 0.3 -0.15 0.2\nv 0.3 0.15 0.2\nv -0.3 0.15 0.2\n"
    "f 1 4 3 2\nf 5 6 7 8\nf 1 2 6 5\nf 3 4 8 7\nf 2 3 7 6\nf 1 5 8 4\n"
)
"""OBJ text of a 0.6 x 0.3 x 0.4 box centred on the origin (6 quads, 12 triangles)."""

NEST_DEPTH = 200_000
"""Depth of the nested list of :func:`nested_value_pickle` (the issue's example)."""


def nested_list(depth: int = NEST_DEPTH) -> list:
    """``[[[...[]...]]]``, ``depth`` levels, built without recursion."""
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def _str(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


def _value(value) -> bytes:
    if isinstance(value, str):
        return _str(value)
    return b"G" + struct.pack(">d", float(value))  # BINFLOAT


def nested_value_pickle(key: str, field: str, depth: int = NEST_DEPTH) -> bytes:
    """A protocol-2 pickle ``{key: GOOD with field = a list nested depth deep}``."""
    items = b""
    for name, value in GOOD.items():
        if name == field:
            # EMPTY_LIST x depth, then APPEND x (depth - 1): each list appended to the one below.
            items += _str(name) + b"]" * depth + b"a" * (depth - 1)
        else:
            items += _str(name) + _value(value)
    record = b"}(" + items + b"u"  # EMPTY_DICT, MARK, pairs, SETITEMS
    return b"\x80\x02}" + _str(key) + record + b"s."  # PROTO 2, EMPTY_DICT, key, record, SETITEM, STOP


def records_pickle(records: dict) -> bytes:
    """A protocol-2 pickle of ``{key: record}`` (plain values only, e.g. ``10**400``)."""
    return pickle.dumps(records, protocol=2)


def malicious_pickle(marker_command: str) -> bytes:
    """A hand-written protocol-0 pickle that calls ``os.system(marker_command)`` when loaded
    by a plain unpickler (GLOBAL ``os.system`` + REDUCE inside the top-level dict)."""
    return b"(dp0\nS'00001.jpg'\np1\ncos\nsystem\np2\n(S'" + marker_command.encode() + b"'\np3\ntp4\nRp5\ns."
