"""Imports only run downward (docs/ARCHITECTURE.md, "Layers").

Every ``import`` in the tree is parsed (``ast``, nothing is imported) and its
target's layer compared with the importer's.  A module may import its own
package and anything in a lower layer; processors, media and gateways are the
three planes and import none of each other, except that the edge (gateways)
serves what the media plane packages (its blob store and playlist renderer).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Lowest first.  A module belongs to the most specific prefix listed.  Layer 0
# is the configuration every package is handed (settings, its errors, logging).
LAYERS: dict[str, int] = {
    "infra.settings": 0, "infra.errors": 0, "infra.logs": 0, "infra.log_redaction": 0,
    "schemas": 1,
    "topics": 2,
    "views": 3,
    "processors": 4, "media": 4,
    "gateways": 5,
    "infra": 6,
    "bench": 7,
}
# Same-layer packages that may import each other, one way.
SIDEWAYS = {("gateways", "media")}
PACKAGES = ("schemas", "topics", "views", "processors", "media", "gateways", "infra", "bench")


def layer_of(module: str) -> tuple[str, int] | None:
    """The most specific LAYERS prefix of a dotted module name and its layer."""
    best = None
    for prefix, layer in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, layer)
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import statement, at any depth (lazy imports too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def violations() -> list[str]:
    problems = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "node_modules" in path.parts:
                continue
            me = module_name(path)
            mine = layer_of(me)
            assert mine is not None, me
            for line, target in imports_of(path):
                top = target.split(".")[0]
                if top == "tests":
                    problems.append(f"{path.relative_to(ROOT)}:{line}: {me} imports the tests ({target})")
                    continue
                theirs = layer_of(target)
                if theirs is None or top == me.split(".")[0] and mine[0] == theirs[0]:
                    continue  # a library, or the module's own package
                upward = theirs[1] > mine[1]
                sideways = theirs[1] == mine[1] > 0 and theirs[0] != mine[0] and (
                    mine[0], theirs[0]) not in SIDEWAYS
                if upward or sideways:
                    kind = "up" if upward else "sideways"
                    problems.append(f"{path.relative_to(ROOT)}:{line}: {me} ({mine[0]}, layer {mine[1]}) imports "
                                    f"{target} ({theirs[0]}, layer {theirs[1]}): {kind}")
    return problems


def test_imports_only_run_downward() -> None:
    assert violations() == []


def test_the_check_sees_a_climb(tmp_path: Path) -> None:
    """The parser finds lazy imports inside functions too."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from gateways.auth import issue_token\n", encoding="utf-8")
    assert imports_of(source) == [(2, "gateways.auth")]
    assert layer_of("gateways.auth") == ("gateways", 5)
    assert layer_of("infra.settings") == ("infra.settings", 0)
    assert layer_of("infra.embedded.registry.app") == ("infra", 6)
