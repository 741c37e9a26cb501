"""scripts/check_imports.py: the import graph of fgpose/ and tfds_builders/ has no cycle.

The finder itself is checked on small packages written to ``tmp_path``, whose graphs are
known by construction.
"""

from __future__ import annotations

import importlib.util
import pathlib
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "check_imports.py"


@pytest.fixture(scope="module")
def check_imports():
    spec = importlib.util.spec_from_file_location("check_imports", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _write_tree(root: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def _run(root: pathlib.Path, *packages: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--root", str(root), "--packages", *packages, "--graph"],
                          capture_output=True, text=True, timeout=120)


def test_repository_import_graph_has_no_cycle():
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert "modules in fgpose, tfds_builders" in proc.stdout, proc.stderr
    assert proc.returncode == 0, proc.stdout


def test_repository_graph_is_complete(check_imports):
    """Every module of both packages is a node, and known imports are edges (lazy ones too)."""
    modules = check_imports.find_modules(ROOT)
    on_disk = {p for pkg in check_imports.PACKAGES for p in (ROOT / pkg).rglob("*.py") if "__pycache__" not in p.parts}
    assert set(modules.values()) == on_disk
    graph = {m: {e.target for e in es} for m, es in check_imports.import_graph(modules).items()}
    assert "fgpose.camera" in graph["fgpose.annotations"]  # a top-level `from fgpose import camera`
    assert "fgpose.models.boxes" in graph["fgpose.models.nms"]
    assert "fgpose.annotations" in graph["tfds_builders.base"]
    # fgpose.synthetic.__getattr__ imports scene and fields inside a function: still edges.
    assert {"fgpose.synthetic.scene", "fgpose.synthetic.fields"} <= graph["fgpose.synthetic"]


def test_finds_a_cycle_through_lazy_relative_and_dotted_imports(tmp_path):
    root = _write_tree(tmp_path, {
        "pkg/__init__.py": "VERSION = 1\n",
        "pkg/low.py": """\
            import os


            def helper():
                from pkg.sub import high  # lazy, inside a function: still an import
                return high
            """,
        "pkg/sub/__init__.py": "",
        "pkg/sub/high.py": "from .. import mid\n",
        "pkg/mid.py": "import pkg.low as low_alias\nimport numpy\n",
        "other/__init__.py": "from pkg import VERSION\n",
    })
    proc = _run(root, "pkg", "other")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 import cycle(s):" in proc.stdout
    assert "- 3 modules: pkg.low, pkg.mid, pkg.sub.high" in proc.stdout
    assert "pkg.low -> pkg.sub.high  (pkg/low.py:5)" in proc.stdout
    assert "pkg.sub.high -> pkg.mid  (pkg/sub/high.py:1)" in proc.stdout
    assert "pkg.mid -> pkg.low  (pkg/mid.py:1)" in proc.stdout
    assert "other -> pkg\n" in proc.stdout  # a name from a package's __init__: an edge to the package


def test_acyclic_tree_passes(tmp_path):
    root = _write_tree(tmp_path, {
        "pkg/__init__.py": "from pkg.top import run\n",
        "pkg/base.py": "import json\n",
        "pkg/mid.py": "from pkg import base\n",
        "pkg/top.py": "from . import mid\nfrom .mid import base\n\n\ndef run():\n    import pkg.base\n",
    })
    proc = _run(root, "pkg")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no import cycles" in proc.stdout
    assert "4 modules in pkg; 4 imports between them" in proc.stdout
    assert "pkg.top -> pkg.base, pkg.mid" in proc.stdout


def test_self_import_and_two_separate_cycles(check_imports):
    graph = {"a": ["b"], "b": ["a"], "c": ["c"], "d": ["e"], "e": [], "f": ["g"], "g": ["h"], "h": ["f", "d"]}
    assert check_imports.find_cycles(graph) == [["a", "b"], ["c"], ["f", "g", "h"]]
    assert check_imports.cycle_path(["c"], graph) == ["c", "c"]
    assert check_imports.cycle_path(["f", "g", "h"], graph) == ["f", "g", "h", "f"]
    comps = check_imports.strongly_connected_components(graph)
    assert sorted(map(tuple, comps)) == [("a", "b"), ("c",), ("d",), ("e",), ("f", "g", "h")]
    # Reverse topological order: a component comes before every component that imports it.
    order = {m: i for i, comp in enumerate(comps) for m in comp}
    assert order["e"] < order["d"] < order["f"]


def test_long_chain_does_not_recurse(check_imports):
    n = 5000  # far deeper than Python's recursion limit
    graph = {f"m{i}": [f"m{i + 1}"] for i in range(n)}
    assert check_imports.find_cycles(graph) == []
    graph[f"m{n}"] = ["m0"]
    assert len(check_imports.find_cycles(graph)[0]) == n + 1
