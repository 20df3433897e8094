"""The kit's own SQL (schema, demo data, diagnosis, timelines) on every PostgreSQL this machine has.

pgserver's wheel brings PostgreSQL 16; Debian's packages bring another major version
(15 on this image). The kit supports 13 to 17; each installation found is exercised.
"""

from __future__ import annotations

import pytest

import incidentkit as ik
from incidentkit.db import embedded
from incidentkit.config import demo_log_path
from incidentkit.db.demo import EXPECTED, INCIDENT_USER, load_demo

BIN_DIRS = embedded.installed_bin_dirs()


@pytest.mark.slow
@pytest.mark.parametrize("bin_dir", BIN_DIRS, ids=[f"pg{embedded.server_version(d)}" for d in BIN_DIRS])
def test_demo_diagnosis_and_timeline_on_each_installed_version(tmp_path, bin_dir):
    major = embedded.server_version(bin_dir)
    assert 13 <= major <= 17, f"PostgreSQL {major} is outside the supported range"
    server = embedded.EmbeddedServer(tmp_path / f"pg{major}", fast_unsafe=True, bin_dir=bin_dir).start()
    try:
        db = ik.Database(load_demo(server, "ik_versions"))
        assert ik.diagnose(db).figures() == EXPECTED
        from incidentkit.evidence.timeline import user_timeline

        t = user_timeline(db, INCIDENT_USER, logs=[demo_log_path()])
        assert [f.verdict for f in t.failures] == ["concurrent_deletion"]
    finally:
        server.stop()


def test_at_least_the_wheel_is_found():
    assert BIN_DIRS and any("pgserver" in str(d) for d in BIN_DIRS)
