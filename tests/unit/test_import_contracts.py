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


# ---- SQL lives only in app.persistence; services do not import app.api ------------------------------------------
SQL_HANDLES = {"sqlalchemy.ext.asyncio": {"AsyncConnection", "AsyncEngine"}}
"""Allowed everywhere in app: the connection and engine handles a service passes to a repository (and the
transaction it opens with them), never a statement."""

SQL_EXCEPTIONS = {
    # error translation: a unique-constraint conflict becomes the caller's own error
    "app/access.py": {"import sqlalchemy.exc.IntegrityError"},
    "app/wallet_registry.py": {"import sqlalchemy.exc.IntegrityError"},
    "app/resolutions.py": {"import sqlalchemy.exc.IntegrityError"},  # a manual match losing a race: 409
    "app/reconciler.py": {"import sqlalchemy.exc.IntegrityError"},  # a pass losing a race is decided again
    # a database outage becomes a 503 problem, and `unavailable` in /v1/health
    "app/api/main.py": {"import sqlalchemy.exc.SQLAlchemyError"},
    "app/api/routes.py": {"import sqlalchemy.exc.SQLAlchemyError"},
    # the CLI names the database it cannot open (credentials redacted by make_url)
    "app/cli.py": {"import sqlalchemy.engine.make_url", "import sqlalchemy.exc.OperationalError"},
}
"""Every use of SQLAlchemy outside app/persistence, by file. Anything else found is a failure."""

SQL_CALLS = {"execute", "exec_driver_sql", "scalar", "scalars", "stream"}
"""Executing on a connection (statements themselves need an import from sqlalchemy, which is caught as such)."""
ENTRY_POINTS = {"app/cli.py", "app/demo.py", "app/__main__.py"}
"""Adapters like app.api (they start the HTTP app, or print what it prints): the only modules outside app/api
that may import it."""


def sql_uses(source: str) -> set[str]:
    """What a module does with SQLAlchemy or SQL: `import NAME` per imported sqlalchemy/sqlmodel name (handles
    in SQL_HANDLES excepted: `select(`, `text(` and the rest cannot be called without such an import), `call
    NAME` per statement executed on a connection, session or engine."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {f"import {a.name}" for a in node.names if a.name.split(".")[0] in ("sqlalchemy", "sqlmodel")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("sqlalchemy",
                                                                                                   "sqlmodel"):
            found |= {f"import {node.module}.{a.name}" for a in node.names
                      if a.name not in SQL_HANDLES.get(node.module, set())}
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if name in SQL_CALLS and (name == "exec_driver_sql" or _is_connection_call(node)):
                found.add(f"call {name}")
    return found


def _is_connection_call(node: ast.Call) -> bool:
    """`x.execute(...)` on something named like a connection or session (not, say, a thread pool or a dict)."""
    target = node.func.value if isinstance(node.func, ast.Attribute) else None
    name = getattr(target, "id", None) or getattr(target, "attr", None) or ""
    return any(word in name.lower() for word in ("conn", "session", "engine", "db"))


def test_the_sql_detector_sees_imports_statements_and_execution() -> None:
    assert sql_uses("from sqlalchemy.ext.asyncio import AsyncEngine\nfrom chains import x\n") == set()
    assert sql_uses("from sqlalchemy import select, text\n") == {"import sqlalchemy.select", "import sqlalchemy.text"}
    assert sql_uses("import sqlalchemy as sa\n") == {"import sqlalchemy"}
    assert sql_uses("from sqlmodel import Field\n") == {"import sqlmodel.Field"}
    assert sql_uses("async def f(conn):\n    await conn.execute(q)\n    await conn.exec_driver_sql('x')\n") == {
        "call execute", "call exec_driver_sql"}
    assert sql_uses("async def f(self):\n    return await self.conn.scalar(q)\n") == {"call scalar"}
    assert sql_uses("def f(pool, d):\n    pool.execute(job)\n    d.update(x)\n") == set()


def test_sql_lives_only_in_app_persistence_with_the_named_exceptions() -> None:
    found: dict[str, set[str]] = {}
    for package in ("app", "chains", "wallets"):
        for path in (ROOT / package).rglob("*.py"):
            file = str(path.relative_to(ROOT))
            if file.startswith("app/persistence/"):
                continue
            uses = sql_uses(path.read_text())
            if uses:
                found[file] = uses
    assert found == SQL_EXCEPTIONS


def test_services_do_not_import_app_api() -> None:
    bad = {f"{file}: {name}" for file, names in _imports("app").items()
           if not file.startswith("app/api/") and file not in ENTRY_POINTS
           for name in names if name == "app.api" or name.startswith("app.api.")}
    assert not bad
