"""Shared fixtures: one real embedded PostgreSQL per test session, a fresh database per test."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import psycopg
import pytest

from incidentkit import embedded

REFERENCE_SQL = Path(__file__).resolve().parents[1] / "lib" / "incidentkit" / "sql" / "reference_schema.sql"
_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server():
    """The session's embedded server (in the session's temporary cache directory, fsync off).

    The notebooks' kernels find the same server through ``INCIDENTKIT_CACHE_DIR`` (set in the
    root conftest.py), which also stops it at the end of the session."""
    return embedded.default_server(fast_unsafe=True).start()


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


@pytest.fixture(scope="session")
def demo_template(pg_server):
    """A template database holding the demo incident, loaded once per session."""
    from incidentkit.demo import load_demo

    load_demo(pg_server, "ik_tpl_demo")
    return "ik_tpl_demo"


@pytest.fixture
def demo_db(pg_server, demo_template):
    """A fresh copy of the demo incident; its libpq URL."""
    name = f"ik_demo_{os.getpid()}_{next(_counter)}"
    url = pg_server.create_database(name, template=demo_template)
    yield url
    pg_server.drop_database(name)


@pytest.fixture
def empty_db(pg_server):
    """A new database with no tables at all; its libpq URL."""
    name = f"ik_empty_{os.getpid()}_{next(_counter)}"
    url = pg_server.create_database(name)
    yield url
    pg_server.drop_database(name)


@pytest.fixture
def broken_db(fresh_db):
    """Rows a restore with --disable-triggers could leave: 2 invalid users, 3 orphaned memberships."""
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("insert into workspaces (id, name) values ('11111111-1111-4111-8111-111111111111', 'ok')")
        conn.execute("insert into users (privy_did, primary_workspace_id) values "
                     "('did:privy:good', '11111111-1111-4111-8111-111111111111')")
        conn.execute("set session_replication_role = replica")  # FK triggers off, as pg_restore --disable-triggers
        conn.execute("insert into users (privy_did, primary_workspace_id) values "
                     "('did:privy:bad1', '22222222-2222-4222-8222-222222222222'),"
                     "('did:privy:bad2', '33333333-3333-4333-8333-333333333333')")
        conn.execute("insert into workspace_members (id, workspace_id, user_id) values "
                     "('aaaaaaaa-0000-4000-8000-000000000001', '22222222-2222-4222-8222-222222222222', 'did:privy:bad1'),"
                     "('aaaaaaaa-0000-4000-8000-000000000002', '44444444-4444-4444-8444-444444444444', 'did:privy:x'),"
                     "('aaaaaaaa-0000-4000-8000-000000000003', '44444444-4444-4444-8444-444444444444', 'did:privy:y')")
    return fresh_db
