"""Imports flow one way: collect → schema ← analysis ← planning ← apply/check/report ← cli.

Every ``import`` of every module of the package, at the top of the file or inside a
function, is checked against the layer table below; a new arrow against it fails with
the module, the line and the import. There is no allow-list.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "memadvise"

# What each layer may import, besides itself. "leaf": helpers that import nothing of ours
# but other leaves (errors, sizes, the version, script source analysis).
LEAF = {"memadvise._errors", "memadvise._version", "memadvise.sizes", "memadvise.source"}
MAY_IMPORT = {
    "leaf": set(),
    "schema": {"leaf"},
    "collect": {"schema", "leaf"},
    "analysis": {"schema", "leaf"},
    "planning": {"analysis", "schema", "leaf"},
    "apply": {"planning", "analysis", "schema", "leaf"},
    "check": {"planning", "analysis", "schema", "leaf"},
    # reporters draw every stage's results, the gate's verdict included
    "report": {"check", "planning", "analysis", "schema", "leaf"},
    "testing": {"schema", "leaf"},  # synthetic profiles for tests and benchmarks
    # entry points: the commands, the library API, the pytest plugin
    "top": {"top", "report", "check", "apply", "planning", "analysis", "collect", "schema", "leaf", "testing"},
}
ENTRY_POINTS = {"memadvise", "memadvise.__main__", "memadvise.check.pytest_plugin"}


def layer(module: str) -> str:
    if module in ENTRY_POINTS or module.startswith("memadvise.cli"):
        return "top"
    if module in LEAF:
        return "leaf"
    return module.split(".")[1]


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, module) of every import of ours in ``path``, at any depth."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from its package, up level - 1
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "memadvise":  # `from memadvise import x`: x is a module or a name of the root
                out += [(node.lineno, f"memadvise.{a.name}" if (root / f"{a.name}.py").exists()
                         or (root / a.name).is_dir() else "memadvise") for a in node.names]
            else:
                out.append((node.lineno, target))
    return [(line, m) for line, m in out if m == "memadvise" or m.startswith("memadvise.")]


def back_arrows(root: Path = PACKAGE) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        source = module_name(path, root)
        mine = layer(source)
        for line, target in imports(path, root):
            theirs = layer(target)
            if theirs != mine and theirs not in MAY_IMPORT[mine]:
                found.append(f"{path.relative_to(root.parent)}:{line}: {source} ({mine}) imports {target} ({theirs})")
    return found


def test_every_layer_is_known():
    modules = [module_name(p) for p in PACKAGE.rglob("*.py")]
    assert {layer(m) for m in modules} <= set(MAY_IMPORT), sorted({layer(m) for m in modules} - set(MAY_IMPORT))


def test_no_import_points_against_the_layers():
    assert back_arrows() == []


@pytest.mark.parametrize("where, line, layers", [
    ("collect/probe.py", "def f():\n    from memadvise.analysis.traffic import predict_step_time\n", "collect -> analysis"),
    ("schema/plan.py", "import memadvise.planning.suggest\n", "schema -> planning"),
    ("analysis/units.py", "from memadvise import __version__\n", "analysis -> top"),
    ("report/html.py", "from memadvise.collect import api\n", "report -> collect"),
    ("sizes.py", "from memadvise.schema.io import read_json\n", "leaf -> schema"),
])
def test_a_new_back_arrow_fails(tmp_path, where, line, layers):
    """The walk sees function-level imports and every form of import statement."""
    import shutil

    copy = tmp_path / "memadvise"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / where
    target.write_text(target.read_text(encoding="utf-8") + "\n\n" + line, encoding="utf-8")
    mine, theirs = layers.split(" -> ")
    found = back_arrows(copy)
    assert len(found) == 1 and f"({mine}) imports" in found[0] and found[0].endswith(f"({theirs})"), found
