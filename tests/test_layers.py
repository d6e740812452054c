"""The import contract of relay/ (docs/architecture.md): dependencies point one way.

entry (server, cli) → protocols (smtp, imap, web, admin) → core (+ the App context) →
{outbound → policy, store} → base. The store imports nothing else of relay but the leaf
`relay.durable` (how a file or directory is made durable: one way, everywhere), so a second
backend only implements storage; nothing imports the composition root but `python -m relay`.
A failure names the module and the import that breaks the rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "relay"
ENTRY = {"relay.server", "relay.__main__", "relay.cli", "relay.cli_text"}
PROTOCOLS = ("relay.smtp", "relay.imap", "relay.web", "relay.admin", "relay.webimap")
CORE = ("relay.core", "relay.app", "relay.services")  # with the App context and the registry
# The SMTP wire format (dot-stuffing, DATA framing) is a sans-IO codec that /mxdeliv and the
# outbound SMTP client share with the SMTP engine.
SMTP_CODEC = {"relay.smtp.dataframe", "relay.smtp.events"}
LEAVES = {"relay.durable"}  # import nothing of relay; every layer may use them
# WebIMAP is served by the HTTP server: relay.web mounts its routes and hands WebSocket
# upgrades to it, and it answers with relay.web.types' plain Request/Response values. Nothing
# else crosses between the two; WebIMAP imports no other part of relay.web.
HOSTED = {
    ("relay.web.routes", "relay.webimap"),
    ("relay.web.routes", "relay.webimap.rest"),
    ("relay.web.server", "relay.webimap"),
    ("relay.web.server", "relay.webimap.ws"),
}
HOSTED_TYPES = {"relay.web.types"}


def layer(module: str) -> str:
    def within(*packages: str) -> bool:
        return any(module == p or module.startswith(p + ".") for p in packages)

    if module in ENTRY:
        return "entry"
    if within(*PROTOCOLS):
        return "protocol"
    if within(*CORE):
        return "core"
    for name in ("outbound", "policy", "store"):
        if within(f"relay.{name}"):
            return name
    return "base"


ALLOWED = {
    "entry": {"entry", "protocol", "core", "outbound", "policy", "store", "base"},
    "protocol": {"core", "outbound", "policy", "store", "base"},
    "core": {"core", "outbound", "policy", "store", "base"},
    "outbound": {"outbound", "policy", "store", "base"},
    "policy": {"policy", "base"},
    "store": {"store"},
    "base": {"base"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every relay module `path` imports, type-checking-only imports included."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    known = {module_name(p) for p in ROOT.rglob("*.py")}
    return {name for name in found if name in known}


MODULES = sorted(ROOT.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_point_one_way(path: Path) -> None:
    me = module_name(path)
    mine = layer(me)
    wrong = []
    for target in sorted(imports(path) - {me}):
        theirs = layer(target)
        if target == "relay.server" and me != "relay.__main__":
            wrong.append(f"{target} (the composition root)")
        elif theirs == "protocol" and mine == "protocol":
            own = target.split(".")[:2] == me.split(".")[:2]
            hosted = (me, target) in HOSTED or (
                me.startswith("relay.webimap.") and target in HOSTED_TYPES
            )
            if not own and not hosted and target not in SMTP_CODEC:
                wrong.append(f"{target} (another protocol)")
        elif theirs not in ALLOWED[mine] and target not in SMTP_CODEC | LEAVES:
            wrong.append(f"{target} ({mine} must not import {theirs})")
    assert not wrong, f"{me} imports " + ", ".join(wrong)


@pytest.mark.parametrize("leaf", sorted(LEAVES))
def test_leaves_import_nothing_of_relay(leaf: str) -> None:
    path = ROOT.parent / (leaf.replace(".", "/") + ".py")
    assert imports(path) == set()


def test_the_contract_sees_every_layer() -> None:
    """Guards the test itself: a renamed package would silently fall into 'base'."""
    layers = {layer(module_name(p)) for p in MODULES}
    assert layers == set(ALLOWED)
