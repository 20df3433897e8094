"""``incidentkit lab``: JupyterLab on the kit's notebooks, with a kernel that can reach the data.

The kernel is this interpreter's (the one the kit is installed in). Without ``DATABASE_URL``
the embedded demo database is started and loaded first, so the notebooks' default
parameters run at once; with it, the notebooks read it when their ``database_url_env``
parameter names it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Sequence

from . import config


def lab_command(port: int | None = None, no_browser: bool = False, extra: Sequence[str] = ()) -> list[str]:
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={config.notebooks_dir()}",
           "--ServerApp.ip=127.0.0.1"]
    if port:
        cmd.append(f"--ServerApp.port={port}")
    if no_browser:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    return cmd + list(extra)


def open_lab(port: int | None = None, no_browser: bool = False, extra: Sequence[str] = (),
             database_url_env: str = config.DEFAULT_URL_ENV) -> int:
    """Start JupyterLab in the foreground; returns its exit code."""
    from .exceptions import ConfigError

    if not config.notebooks_dir().is_dir():
        raise ConfigError(f"the notebooks folder is missing: {config.notebooks_dir()}")
    if not os.environ.get(database_url_env):
        from .db.demo import ensure_demo

        ensure_demo()
        print(f"demo database ready; notebooks read it by default (set {database_url_env} and the "
              "database_url_env parameter for another)", file=sys.stderr)
    return _run_until_stopped(lab_command(port, no_browser, extra))


def _run_until_stopped(cmd: list[str], grace: float = 15.0) -> int:
    """Run JupyterLab in the foreground; SIGINT or SIGTERM to this process stops it (and so its
    kernels: JupyterLab shuts them down on SIGTERM) before this process returns, so nothing is
    left on the port. The caller then stops the embedded server it started."""
    import signal

    proc = subprocess.Popen(cmd)

    def _stop(signum, frame):  # noqa: ARG001 - signal handler signature
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
