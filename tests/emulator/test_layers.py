"""Layers talk over HTTP: the emulator (the server) imports no client module, and client code
uses only the emulator package's public face (``start``, ``connect``, ``EmulatorHandle``)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "hydra_vertex"
EMULATOR = SRC / "emulator"
# Pure helpers both sides share; everything else outside the emulator package is client code.
SHARED = {
    "hydra_vertex.errors",
    "hydra_vertex.files",
    "hydra_vertex.search_space",
    "hydra_vertex._study_spec",
    "hydra_vertex.images",
    "hydra_vertex.reasons",
    "hydra_vertex.overrides",
    "hydra_vertex.cron",
    "hydra_vertex.html_style",
    "hydra_vertex.local_conventions",
    "hydra_vertex.pipeline_dag",
    "hydra_vertex.report_charts",  # the console draws the report's charts
    "hydra_vertex.trials",  # trial values and the best trial: one rule for every page
    "hydra_vertex.gcp_resources",  # the launchers' output format: cancel reaches their jobs
}


def imported(tree: ast.AST) -> Iterator[tuple[str, ast.AST]]:
    """``(module, node)`` for every ``hydra_vertex`` module a tree imports."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node
            if node.module == "hydra_vertex":
                for alias in node.names:
                    yield f"hydra_vertex.{alias.name}", node


def outside(tree: ast.AST, function: str) -> ast.AST:
    """The tree without the body of ``function`` (the client-side entry point ``connect``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == function:
            node.body = [ast.Pass()]
    return tree


def test_the_emulator_imports_no_client_module() -> None:
    for path in sorted(EMULATOR.glob("*.py")):
        tree = ast.parse(path.read_text())
        if path.name == "__init__.py":
            tree = outside(tree, "connect")  # connect() is the client side: it sets the SDK up
        for module, node in imported(tree):
            if module.startswith("hydra_vertex") and module != "hydra_vertex":
                assert module.startswith("hydra_vertex.emulator") or module in SHARED, (
                    f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')} imports {module}"
                )


def test_client_code_uses_only_the_emulators_public_face() -> None:
    paths = [p for p in SRC.rglob("*.py") if EMULATOR not in p.parents]
    paths += sorted((ROOT / "components").glob("*.py"))
    assert len(paths) > 20
    for path in paths:
        tree = ast.parse(path.read_text())
        for module, node in imported(tree):
            if module.startswith("hydra_vertex.emulator"):
                assert module == "hydra_vertex.emulator", (
                    f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')} imports {module}"
                )
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                assert node.attr != "_emulator", f"{path.relative_to(ROOT)}:{node.lineno}"
