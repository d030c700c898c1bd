"""The import contract: every project module imports only its own layer or lower ones, and
only at module level (a function-level import of a project module hides a cycle).

    dgcn_cli > stages.<stage> > core.train / core.predict > core.cues / core.expanders /
    core.eval > core.nets / core.datasets > core.io > the leaves (errors, config, units, ...)

A test of the same power as an import-linter contract, with nothing to install."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = [  # lowest first; a module belongs to the first prefix it starts with, from the top
    ("leaves", ("stages.core",)),
    ("io", ("stages.core.io",)),
    ("nets / datasets", ("stages.core.nets", "stages.core.datasets")),
    ("cues / expanders / eval", ("stages.core.cues", "stages.core.expanders", "stages.core.eval")),
    ("train / predict", ("stages.core.train", "stages.core.predict")),
    ("stages", ("stages",)),
    ("cli", ("dgcn_cli",)),
]


def layer(module: str) -> int:
    best, depth = None, -1
    for n, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and p.count(".") > depth:
                best, depth = n, p.count(".")
    if best is None:
        raise ValueError(module)
    if best == LAYERS.index(("stages", ("stages",))) and module.startswith("stages.core"):
        return 0  # stages.core itself and its plain modules: the leaves
    return best


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path, tree: ast.Module):
    """(imported module, line, at module level?) for every import of a project module."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + ([f"{mod}.{a.name}" for a in node.names] if not node.module or node.level else [])
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] in ("stages", "dgcn_cli"):
                yield target, node.lineno, id(node) in top


def sources():
    for root in ("stages", "dgcn_cli"):
        yield from sorted((REPO / root).rglob("*.py"))


def violations():
    found = []
    for path in sources():
        name, tree = module_name(path), ast.parse(path.read_text(), str(path))
        for target, line, at_top in project_imports(path, tree):
            where = f"{path.relative_to(REPO)}:{line}"
            if not at_top and not _under_type_checking(tree, line):
                found.append(f"{where}: {name} imports {target} inside a function")
            try:
                lo, hi = layer(name), layer(target)
            except ValueError:
                continue
            if hi > lo:
                found.append(f"{where}: {name} ({LAYERS[lo][0]}) imports {target} ({LAYERS[hi][0]})")
    return found


def _under_type_checking(tree: ast.Module, line: int) -> bool:
    return any(isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING" and n.lineno <= line <= n.end_lineno
               for n in tree.body)


def test_no_lower_layer_imports_a_higher_one():
    assert violations() == []


@pytest.mark.parametrize("module, target, wrong", [
    ("stages.core.io.artifacts", "stages.core.datasets", True),
    ("stages.core.datasets.voc", "stages.core.io.images", False),
    ("stages.core.nets.weights", "stages.core.train.fit", True),
    ("stages.train", "stages.core.train.fit", False),
    ("stages.core.config", "stages.core.io.files", True),
    ("stages.core.eval.metrics", "stages.core.expanders", False),  # same layer
    ("stages.core.train.fit", "dgcn_cli.common", True),
])
def test_the_check_fails_on_a_wrong_import(module, target, wrong):
    assert (layer(target) > layer(module)) == wrong
