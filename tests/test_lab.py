"""``incidentkit lab`` serves the notebooks with a kernel that has the kit and reaches the demo."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


@pytest.mark.slow
def test_lab_serves_the_notebooks(tmp_path):
    port, token = _free_port(), "ik-test-token"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["JUPYTER_RUNTIME_DIR"] = str(tmp_path / "runtime")
    env["JUPYTER_CONFIG_DIR"] = str(tmp_path / "config")
    proc = subprocess.Popen([shutil.which("incidentkit"), "lab", "--no-browser", "--port", str(port), "--",
                             f"--IdentityProvider.token={token}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(f"{base}/api/status?token={token}")
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "JupyterLab did not start"
                time.sleep(0.5)
        names = {item["name"] for item in _get(f"{base}/api/contents?token={token}")["content"]}
        assert "01-diagnosis.ipynb" in names
        specs = _get(f"{base}/api/kernelspecs?token={token}")
        argv = specs["kernelspecs"][specs["default"]]["spec"]["argv"]
        # The default kernel's interpreter has the kit and reaches the demo database.
        check = subprocess.run([argv[0], "-c", "import incidentkit as ik; print(ik.diagnose(ik.Database.demo())"
                                ".total_users)"], capture_output=True, text=True, env=env, timeout=120)
        assert check.stdout.strip() == "179", check.stderr
        with urllib.request.urlopen(f"{base}/lab?token={token}", timeout=10) as r:
            assert r.status == 200 and b"JupyterLab" in r.read()
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    # SIGTERM to `incidentkit lab` stopped JupyterLab too: nothing answers on its port any more.
    assert proc.returncode == 0
    with pytest.raises(OSError):
        _get(f"{base}/api/status?token={token}")
