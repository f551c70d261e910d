"""The shape of the code: handler.py is the table of contents, the chat package's imports run
one way (entry points -> domain -> adapters), with no cycle and nothing reaching back up."""

from __future__ import annotations

import ast
import graphlib
import re
from pathlib import Path
from typing import Any

import pytest

from scripts.service_config import ROOT

# Lower layers never import higher ones. Within a layer a module may use another (delivery uses
# connections to prune), as long as there is no cycle.
LAYERS = {
    "handler": 4,
    # what the routes do, and the entry points' frame
    "messaging": 3, "channels": 3, "recovery": 3, "sessions": 3, "tokens": 3, "worker": 3, "gateway": 3,
    "dispatch": 3, "sweeper": 3, "publisher": 3, "backend": 3, "stream": 3, "rounds": 3, "changes": 3, "moderation": 3, "operators": 3,
    "reads": 3, "indicators": 3,
    # adapters: one AWS resource each
    "connections": 2, "members": 2, "presence": 2, "ratelimit": 2, "history": 2, "delivery": 2, "fanout": 2,
    "events": 2, "review": 2,
    # the wire format, and what everything shares
    "conversations": 2, "inbox": 2, "bans": 2, "verifier": 2, "jwks": 2, "issuers": 1,
    "requests": 1, "frames": 1, "callers": 1, "jobs": 1, "users": 0, "telemetry": 0, "aws": 0, "errors": 0, "example_review": 0,
}
ENTRY_POINT_MAX_STATEMENTS = 6


def chat_imports(path: Path) -> set[str]:
    """The chat modules (and handler) a file imports, by module name."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "chat":
                found.update(alias.name for alias in node.names)
            elif node.module.startswith("chat."):
                found.add(node.module.split(".")[1])
            elif node.module == "handler":
                found.add("handler")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "handler" or alias.name.startswith("chat."):
                    found.add(alias.name.split(".")[-1])
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = {path.stem: path for path in (ROOT / "chat").glob("*.py") if path.stem != "__init__"}
    modules["handler"] = ROOT / "handler.py"
    return {name: chat_imports(path) for name, path in modules.items()}


def test_every_module_has_a_layer(graph: dict[str, set[str]]) -> None:
    assert set(graph) == set(LAYERS), "add the new module to LAYERS (and to chat/__init__.py's list)"


def test_the_package_lists_every_module_in_its_docstring(graph: dict[str, set[str]]) -> None:
    import chat

    listed = {line.split()[0] for line in (chat.__doc__ or "").splitlines() if line.startswith("    ")}
    assert listed == set(graph) - {"handler"}


def test_imports_have_no_cycle(graph: dict[str, set[str]]) -> None:
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError


def test_imports_never_reach_back_up(graph: dict[str, set[str]]) -> None:
    upward = [(module, imported) for module, imports in graph.items() for imported in imports if LAYERS[imported] > LAYERS[module]]
    assert upward == []


def test_nothing_imports_handler(graph: dict[str, set[str]]) -> None:
    assert [module for module, imports in graph.items() if "handler" in imports] == []


def handler_functions() -> dict[str, ast.FunctionDef]:
    tree = ast.parse((ROOT / "handler.py").read_text())
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_handler_holds_only_the_entry_points_serverless_yml_names(service_config_test: dict[str, Any]) -> None:
    named = {function["handler"].split(".", 1)[1] for function in service_config_test["functions"].values()}
    # serverless.yml also declares the example review function, which plugins/review.js keeps
    # only with --param reviewFunction=example (this config is the default one).
    declared = set(re.findall(r"^    handler: handler\.(\w+)$", (ROOT / "serverless.yml").read_text(), re.M))
    assert declared - named == {"review_example"}
    assert set(handler_functions()) == declared


@pytest.mark.parametrize("name", sorted(handler_functions()))
def test_each_entry_point_is_a_few_lines(name: str) -> None:
    function = handler_functions()[name]
    body = function.body[1:] if isinstance(function.body[0], ast.Expr) else function.body  # after the docstring
    statements = sum(1 for statement in body for _ in ast.walk(statement) if isinstance(_, ast.stmt))
    assert ast.get_docstring(function), f"{name} says what its route does"
    assert statements <= ENTRY_POINT_MAX_STATEMENTS, f"{name} has {statements} statements: move the work into chat/"


def test_the_test_files_make_mutate_runs_first_for_each_module_exist() -> None:
    # tests/mutation.py runs a mutant against these first: a name that matches no file (five did)
    # silently leaves the module's mutants to tests that were never about it.
    from tests.support.mutation import RELATED

    missing = sorted({name for names in RELATED.values() for name in names if not (ROOT / "tests" / "unit" / name).is_file()})
    assert missing == []
