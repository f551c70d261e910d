"""The documentation says what the code does: every route is in the README's protocol table and
in docs/protocol.md, every refusal text the service can send is in docs/protocol.md word for
word, every link between the documents leads somewhere, and every test file has its row in
docs/testing.md."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Routes a client never names in an action.
NOT_ACTIONS = {"$connect", "$disconnect", "$default"}


def _flat(path: Path) -> str:
    return re.sub(r"\s+", " ", path.read_text())


def _websocket_routes() -> set[str]:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    config = yaml.load((ROOT / "serverless.yml").read_text(), Loader=Loader)
    routes = {
        event["websocket"]["route"] if isinstance(event["websocket"], dict) else event["websocket"]
        for function in config["functions"].values() for event in function.get("events", []) if "websocket" in event
    }
    return (routes | {"heartbeat"}) - NOT_ACTIONS  # heartbeat: a MOCK route added by plugins/heartbeat.js


def _refusal_texts() -> list[tuple[str, str, list[str]]]:
    """Each Refusal raised in chat/: where, its code, and the fixed parts of its text (an
    f-string's parts between its placeholders)."""
    trees = {module: ast.parse(module.read_text()) for module in sorted((ROOT / "chat").glob("*.py"))}
    constants: dict[str, str] = {}  # module-level texts and numbers, as imported by name (USER_ID_RULE)
    for tree in trees.values():
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                if isinstance(node.value, ast.Constant) and isinstance(node.value.value, (str, int)):
                    constants[node.targets[0].id] = str(node.value.value)
                elif isinstance(node.value, ast.JoinedStr):
                    constants[node.targets[0].id] = _joined(node.value, constants)
    found = []
    for module, tree in trees.items():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Refusal" and len(node.args) == 2):
                continue
            code, text = node.args
            assert isinstance(code, ast.Constant), f"{module.name}:{node.lineno}: a refusal's code is a literal"
            parts = _text_parts(text, constants)
            if parts is None:
                continue
            where = f"{module.name}:{node.lineno}"
            found.append((where, code.value, [p for part in parts for p in part.split(HOLE) if len(p.strip()) > 8]))
    return found


def _text_parts(text: ast.expr, constants: dict[str, str]) -> list[str] | None:
    if isinstance(text, ast.Constant):
        return [text.value]
    if isinstance(text, ast.Name) and text.id in constants:
        return [constants[text.id]]
    if isinstance(text, ast.JoinedStr):
        return [_joined(text, constants)]
    if isinstance(text, ast.BinOp):  # "..." + EXAMPLE + "."
        left, right = _text_parts(text.left, constants), _text_parts(text.right, constants)
        return None if left is None or right is None else [HOLE.join(left + right)]
    return None


def _error_rows() -> list[tuple[str, str]]:
    """The rows of docs/protocol.md's error tables: (their codes cell, the whole row)."""
    rows = []
    for line in (ROOT / "docs" / "protocol.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) == 3 and re.fullmatch(r"(`[a-z_]+`[ ,/]*)+", cells[1]):
            rows.append((cells[1], re.sub(r"\s+", " ", line)))
    return rows


HOLE = "\0"  # where an f-string's value goes that is not a known constant


def _joined(text: ast.JoinedStr, constants: dict[str, str]) -> str:
    """An f-string with the constants it names filled in and a HOLE for anything else."""
    out = []
    for value in text.values:
        if isinstance(value, ast.Constant):
            out.append(value.value)
        elif isinstance(value.value, ast.Name) and value.value.id in constants:
            out.append(constants[value.value.id])
        else:
            out.append(HOLE)
    return "".join(out)


def test_every_route_is_in_the_readme_and_the_protocol() -> None:
    readme, protocol = _flat(ROOT / "README.md"), _flat(ROOT / "docs" / "protocol.md")
    routes = _websocket_routes()
    assert {"sendMessage", "join", "getConversations", "renewToken"} <= routes
    assert [route for route in sorted(routes) if f"`{route}`" not in readme] == []
    assert [route for route in sorted(routes) if f'"action": "{route}"' not in protocol] == []


def test_every_refusal_the_service_sends_is_in_the_protocol_word_for_word_with_its_code() -> None:
    rows = _error_rows()
    refusals = _refusal_texts()
    assert len(refusals) > 30 and len(rows) > 30  # the scans found them
    misplaced = []
    for where, code, parts in refusals:
        for part in parts:
            wanted = re.sub(r"\s+", " ", part)
            if not any(wanted in row and f"`{code}`" in codes for codes, row in rows):
                misplaced.append((where, code, part))
    assert misplaced == []


def test_the_protocol_lists_every_error_code_and_no_other() -> None:
    from chat.errors import CODES

    table = re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \| (yes|no) \|", (ROOT / "docs" / "protocol.md").read_text(), re.M)
    assert {code: (int(status), retry == "yes") for code, status, retry in table} == {
        code.name: (code.status, code.retry) for code in CODES.values()
    }
    assert len(table) == len(CODES)


def test_every_code_in_the_error_tables_is_a_code() -> None:
    from chat.errors import CODES

    named = {code for codes, _ in _error_rows() for code in re.findall(r"`([a-z_]+)`", codes)}
    assert named - set(CODES) == set()


@pytest.mark.parametrize("document", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_link_between_documents_leads_to_a_file(document: Path) -> None:
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", document.read_text())
    local = [target for target in targets if not re.match(r"[a-z]+:", target)]
    assert [target for target in local if not (document.parent / target).exists()] == []


def test_every_test_file_says_what_it_checks_in_docs_testing() -> None:
    listed = set(re.findall(r"^\| `(tests/\w+/test_\w+\.py)` \|", (ROOT / "docs" / "testing.md").read_text(), re.M))
    files = {str(path.relative_to(ROOT)) for path in (ROOT / "tests").glob("*/test_*.py")}

    assert files - listed == set(), "add a row to docs/testing.md"
    assert listed - files == set(), "a row names a file that is gone"


@pytest.mark.parametrize("document", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_file_a_document_names_is_there(document: Path) -> None:
    # Paths of the repository's own files, as the documents name them (`chat/history.py`,
    # `tests/unit/test_seq.py`): seven still named tests/ as it was before the tiers.
    named = re.findall(r"`((?:chat|tests|scripts|bench|plugins|web|docs)/[\w./-]+\.(?:py|js|md|json))`", document.read_text())
    assert [path for path in named if not (ROOT / path).exists()] == []
