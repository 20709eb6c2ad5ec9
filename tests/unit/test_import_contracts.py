"""Dependencies point inward: app -> chains, wallets, settlement core. chains and wallets never import app; the
settlement core imports nothing of ours but itself; JSON-RPC (web3, aiohttp) only in chains; SQL only in
app.persistence."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def _imports(package: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in (ROOT / package.replace(".", "/")).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        out[str(path.relative_to(ROOT))] = names
    return out


@pytest.mark.parametrize(("package", "forbidden"), [
    ("chains", ("app",)),
    ("wallets", ("app", "chains")),
    ("app.settlement", ("app.persistence", "app.api", "chains", "wallets", "sqlalchemy", "sqlmodel", "fastapi",
                        "web3", "aiohttp")),
    ("app.api", ("web3", "aiohttp", "sqlalchemy.orm")),
])
def test_forbidden_imports(package: str, forbidden: tuple[str, ...]) -> None:
    bad = {f"{file}: {name}" for file, names in _imports(package).items() for name in names
           if any(name == f or name.startswith(f + ".") for f in forbidden)}
    assert not bad


def test_the_settlement_core_uses_the_standard_library_only() -> None:
    for file, names in _imports("app.settlement").items():
        for name in names:
            top = name.split(".")[0]
            assert top in sys.stdlib_module_names or name.startswith("app.settlement") or top == "__future__", (
                file, name)


def test_json_rpc_is_spoken_only_in_chains() -> None:
    for package in ("app", "wallets"):
        for file, names in _imports(package).items():
            assert not {n for n in names if n.split(".")[0] in ("web3", "aiohttp")}, file
