"""Shared fixtures: one real embedded PostgreSQL per test session, a fresh database per test."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from incidentkit import embedded

REFERENCE_SQL = Path(__file__).resolve().parents[1] / "lib" / "incidentkit" / "sql" / "reference_schema.sql"
_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """A throwaway embedded server for the whole session (fsync off), stopped at the end."""
    server = embedded.EmbeddedServer(tmp_path_factory.mktemp("pg") / "data", fast_unsafe=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def reference_template(pg_server):
    """A template database holding the empty reference schema."""
    name = "ik_tpl_reference"
    pg_server.create_database(name, replace=True)
    with pg_server.admin(name) as conn:
        conn.execute(REFERENCE_SQL.read_text())
    return name


@pytest.fixture
def fresh_db(pg_server, reference_template):
    """A new database with the reference schema (no rows); its libpq URL. Dropped afterwards."""
    name = f"ik_test_{os.getpid()}_{next(_counter)}"
    url = pg_server.create_database(name, template=reference_template)
    yield url
    pg_server.drop_database(name)


@pytest.fixture
def empty_db(pg_server):
    """A new database with no tables at all; its libpq URL."""
    name = f"ik_empty_{os.getpid()}_{next(_counter)}"
    url = pg_server.create_database(name)
    yield url
    pg_server.drop_database(name)
