"""``incidentkit investigate NAME`` and ``incidentkit lab``: JupyterLab on a working folder.

An investigation is a folder, ``investigations/<YYYY-MM-DD>-<name>/`` in the current directory,
holding copies of the kit's notebooks (without outputs) and a ``parameters.toml`` they take
their parameters from. JupyterLab is rooted there, so autosave and every output land in the
investigation, never in the shipped notebooks (the templates, only ever read). The folder
carries its own ``.gitignore`` (``*``): against production it holds real user ids, which must
not reach git, whichever repository it is created in.

Each copy has, right after its ``parameters`` cell, an ``injected-parameters`` cell (papermill's
convention) written from ``parameters.toml``. Reopening an investigation keeps the notebooks
as the user left them; only an injected cell the user has not edited follows a changed
``parameters.toml``. ``incidentkit lab`` without a name opens today's ``scratch`` investigation.

The kernel is this interpreter's (the one the kit is installed in). When the investigation
reads the demo (``database_url_env = ""``) the embedded server is started and the demo loaded
first, and stopped again when JupyterLab stops (unless another kit process still uses it).
JupyterLab runs with its news feed, update check and news prompt off.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from . import config
from .exceptions import ConfigError

#: Where investigations are created: ``investigations/`` in the current directory.
INVESTIGATIONS_ENV = "INCIDENTKIT_INVESTIGATIONS"
PARAMETERS_FILE = "parameters.toml"
#: The investigation ``incidentkit lab`` opens without a name (today's).
SCRATCH = "scratch"
#: The kit's own files inside an investigation (JupyterLab's settings and workspace layouts).
PRIVATE_DIR = ".incidentkit"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")
_DATED = re.compile(r"(\d{4})-(\d{2})-(\d{2})-(.+)")
_INJECTED = "injected-parameters"
_DIGEST_KEY = "incidentkit"

#: JupyterLab settings defaults in the lab the kit starts: no news prompt, no news, no update check.
LAB_SETTING_OVERRIDES = {
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
}


# -- the investigation folder -----------------------------------------------------------------
def investigations_dir() -> Path:
    """``investigations/`` in the current directory (``$INCIDENTKIT_INVESTIGATIONS`` moves it)."""
    return Path(os.environ.get(INVESTIGATIONS_ENV) or "investigations").expanduser().absolute()


def check_name(name: str) -> str:
    """An investigation's name: letters, digits, ``.``, ``_`` and ``-``, starting with a letter or
    digit, at most 80 characters, no ``..`` (so it is one folder, never a path)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        from .text import one_line

        raise ConfigError(f"not a valid investigation name: {one_line(repr(name), 100)} (use letters, digits, "
                          "'.', '_' and '-', starting with a letter or digit, at most 80 characters; no '..' "
                          "and no path separators)")
    return name


def template_notebooks() -> list[Path]:
    """The shipped notebooks, in reading order: the templates every investigation copies."""
    folder = config.notebooks_dir()
    if not folder.is_dir():
        raise ConfigError(f"the notebooks folder is missing: {folder}")
    found = sorted(folder.glob("[0-9][0-9]-*.ipynb"))
    if not found:
        raise ConfigError(f"no notebooks in {folder}")
    return found


def declared_parameters(path: Path) -> dict[str, tuple[Any, str]]:
    """The parameters a notebook declares in its ``parameters`` cell: name -> (default, comment)."""
    import papermill

    out = {}
    for name, p in papermill.inspect_notebook(str(path)).items():
        try:
            default = ast.literal_eval(p["default"])
        except (ValueError, SyntaxError):
            default = None
        out[name] = (default, p.get("help") or "")
    return out


@dataclass
class Investigation:
    """An investigation folder, as :func:`open_investigation` left it."""

    folder: Path
    created: bool
    parameters: dict[str, Any]
    notebooks: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def uses_demo(self) -> bool:
        """True when the notebooks read the embedded demo database (``database_url_env`` empty)."""
        return not self.parameters.get("database_url_env")

    @property
    def config_dir(self) -> Path:
        """A Jupyter config folder of the investigation's own (``labconfig/`` settings defaults)."""
        return self.folder / PRIVATE_DIR / "jupyter"


def find_folder(name: str, root: Path | None = None, today: str | None = None) -> Path:
    """The investigation folder for ``name``: ``root/name`` when ``name`` is already dated
    (``2025-10-08-fk-race``); else the newest existing ``root/<date>-<name>``; else today's (UTC)."""
    check_name(name)
    root = root or investigations_dir()
    if _DATED.fullmatch(name):
        return root / name
    existing = sorted(p for p in root.glob(f"????-??-??-{name}")
                      if p.is_dir() and _DATED.fullmatch(p.name) and _DATED.fullmatch(p.name).group(4) == name)
    if existing:
        return existing[-1]
    return root / f"{today or datetime.now(timezone.utc).date().isoformat()}-{name}"


def open_investigation(name: str, *, database_url_env: str = config.DEFAULT_URL_ENV, root: Path | None = None,
                       today: str | None = None, exact: bool = False) -> Investigation:
    """Create (or reopen) the investigation ``name`` and return it.

    A new one gets a copy of each shipped notebook (outputs cleared) and a ``parameters.toml``
    with the notebooks' defaults; it reads ``$database_url_env`` when that variable is set now,
    the demo otherwise. ``exact``: today's ``<date>-<name>``, never an older one."""
    root = root or investigations_dir()
    day = today or datetime.now(timezone.utc).date().isoformat()
    folder = root / f"{day}-{check_name(name)}" if exact and not _DATED.fullmatch(name) else \
        find_folder(name, root, day)
    templates = template_notebooks()
    declared = {t.name: declared_parameters(t) for t in templates}
    known = {k: v for params in declared.values() for k, v in params.items()}

    created = not folder.exists()
    try:
        _private_root(root)
        folder.mkdir(mode=0o700, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create the investigation folder {folder}: {e.strerror or e}") from None
    params_path = folder / PARAMETERS_FILE
    if not params_path.exists():
        defaults = {k: v[0] for k, v in known.items()}
        if os.environ.get(database_url_env) and "database_url_env" in defaults:
            defaults["database_url_env"] = database_url_env
        params_path.write_text(parameters_toml(defaults, {k: v[1] for k, v in known.items()}), encoding="utf-8")
    parameters = read_parameters(params_path, known)

    inv = Investigation(folder, created, parameters)
    for template in templates:
        target = folder / template.name
        mine = {k: v for k, v in parameters.items() if k in declared[template.name]}
        if _refresh_copy(template, target, mine):
            inv.notes.append(f"kept {target.name}: its injected-parameters cell was edited, so it does not "
                             f"follow {PARAMETERS_FILE}")
        inv.notebooks.append(target)
    _write_lab_settings(inv.config_dir)
    env_name = parameters.get("database_url_env")
    if env_name and not os.environ.get(str(env_name)):
        inv.notes.append(f"{PARAMETERS_FILE} reads ${env_name}, which is not set: the notebooks cannot connect "
                         f"until it is (database_url_env = \"\" reads the demo)")
    return inv


def _private_root(root: Path) -> None:
    """``investigations/`` itself: private (0700) and git-ignored wherever it is (its own ``.gitignore``)."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    ignore = root / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# incidentkit investigations hold real user ids from production: never commit them.\n*\n",
                          encoding="utf-8")


def parameters_toml(values: dict[str, Any], comments: dict[str, str] | None = None) -> str:
    """``parameters.toml``: one line per parameter with its comment (a None value is left out, commented)."""
    comments = comments or {}
    lines = ["# The parameters of this investigation's notebooks. Each notebook takes those it declares,",
             "# in the injected-parameters cell after its parameters cell; edit here and reopen the",
             "# investigation (incidentkit investigate NAME) to apply them to the cells you did not edit.",
             "# Paths are relative to this folder. database_url_env is the NAME of the variable holding",
             "# the URL (empty: the embedded demo database); the URL itself never goes here.", ""]
    for name, value in values.items():
        comment = f"  # {comments[name]}" if comments.get(name) else ""
        if value is None:
            lines.append(f"# {name} = ...{comment} (not set: the notebook's default)")
        else:
            lines.append(f"{name} = {_toml_value(value)}{comment}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON's escapes are TOML basic-string escapes
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        items = [f"{k if re.fullmatch(r'[A-Za-z0-9_-]+', str(k)) else json.dumps(str(k))} = {_toml_value(v)}"
                 for k, v in value.items() if v is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    raise ConfigError(f"a parameter value TOML cannot hold: {type(value).__name__}")


def read_parameters(path: Path, known: dict[str, tuple[Any, str]]) -> dict[str, Any]:
    """``parameters.toml``, checked: valid TOML, only parameters some notebook declares."""
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeError) as e:
        raise ConfigError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{path}: no notebook has the parameter{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return values


def _digest(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def _injected_cell(parameters: dict[str, Any]):
    import nbformat
    from papermill.translators import translate_parameters

    source = translate_parameters("python3", "python", parameters,
                                  f"Parameters from {PARAMETERS_FILE} (edit that file and reopen the investigation, "
                                  "or edit here: an edited cell is kept)")
    cell = nbformat.v4.new_code_cell(source=source)
    cell.metadata["tags"] = [_INJECTED]
    cell.metadata[_DIGEST_KEY] = {"parameters_digest": _digest(source)}
    return cell


def _refresh_copy(template: Path, target: Path, parameters: dict[str, Any]) -> bool:
    """Write ``target`` from ``template`` (outputs cleared, parameters injected) when it does not
    exist; else bring its unedited injected cell up to date. True when an edited cell was kept."""
    import nbformat

    fresh = _injected_cell(parameters)
    if not target.exists():
        nb = nbformat.read(template, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        at = next((i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])), -1)
        nb.cells.insert(at + 1, fresh)
        _write_notebook(nb, target)
        return False
    nb = nbformat.read(target, as_version=4)
    cell = next((c for c in nb.cells if _INJECTED in c.metadata.get("tags", [])), None)
    if cell is None or cell.source == fresh.source:
        return False
    if _digest(cell.source) != cell.metadata.get(_DIGEST_KEY, {}).get("parameters_digest"):
        return True
    cell.source, cell.metadata[_DIGEST_KEY] = fresh.source, fresh.metadata[_DIGEST_KEY]
    _write_notebook(nb, target)
    return False


def _write_notebook(nb, target: Path) -> None:
    import nbformat

    tmp = target.with_name(f".{target.name}.tmp")
    nbformat.write(nb, str(tmp))
    os.replace(tmp, target)


def _write_lab_settings(config_dir: Path) -> None:
    """JupyterLab's settings defaults for this lab (``labconfig/default_setting_overrides.json``,
    found through ``JUPYTER_CONFIG_PATH``): the user's own settings still win."""
    labconfig = config_dir / "labconfig"
    labconfig.mkdir(parents=True, exist_ok=True)
    (labconfig / "default_setting_overrides.json").write_text(json.dumps(LAB_SETTING_OVERRIDES, indent=2) + "\n",
                                                               encoding="utf-8")


# -- JupyterLab -------------------------------------------------------------------------------
def lab_command(root: Path, port: int | None = None, no_browser: bool = False, extra: Sequence[str] = ()) -> list[str]:
    """JupyterLab rooted at ``root``, on 127.0.0.1, with no news feed and no update check."""
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={root}", "--ServerApp.ip=127.0.0.1",
           "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
           f"--LabApp.workspaces_dir={root / PRIVATE_DIR / 'workspaces'}"]
    if port:
        cmd.append(f"--ServerApp.port={port}")
    if no_browser:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    return cmd + list(extra)


def lab_env(inv: Investigation) -> dict[str, str]:
    """This process's environment, with the investigation's Jupyter config folder searched first."""
    env = dict(os.environ)
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(p for p in (str(inv.config_dir), env.get("JUPYTER_CONFIG_PATH"))
                                                 if p)
    return env


def open_lab(name: str | None = None, port: int | None = None, no_browser: bool = False, extra: Sequence[str] = (),
             database_url_env: str = config.DEFAULT_URL_ENV, start: bool = True) -> int:
    """Open the investigation ``name`` (today's ``scratch`` without one) and run JupyterLab on it in
    the foreground until it stops; returns its exit code. ``start=False`` only prepares the folder."""
    inv = open_investigation(name or SCRATCH, database_url_env=database_url_env, exact=name is None)
    print(f"investigation {'created' if inv.created else 'reopened'}: {inv.folder}", file=sys.stderr)
    for note in inv.notes:
        print(f"note: {note}", file=sys.stderr)
    if not start:
        print(inv.folder)
        return 0
    from .db import embedded

    held = list(embedded.STARTED_HERE)
    if inv.uses_demo:
        from .db.demo import ensure_demo

        ensure_demo()
        print("demo database ready: the notebooks read it (database_url_env = \"\" in "
              f"{PARAMETERS_FILE}; name a variable holding a URL there for another database)", file=sys.stderr)
    try:
        return _run_until_stopped(lab_command(inv.folder, port, no_browser, extra), env=lab_env(inv))
    finally:
        _stop_servers(embedded, held)


def _stop_servers(embedded, held: list) -> None:
    """Release the embedded server this lab started (stopped unless another kit process uses it),
    and stop one its kernels started on demand (the race lab) if no kit process uses it any more."""
    from .exceptions import IncidentKitError

    for server in [s for s in embedded.STARTED_HERE if s not in held]:
        try:
            server.release()
        except IncidentKitError:
            pass
    try:
        server = embedded.default_server()
        if server.data_dir.exists():
            server.stop_if_orphaned()
    except IncidentKitError:
        pass


def _run_until_stopped(cmd: list[str], grace: float = 15.0, env: dict[str, str] | None = None) -> int:
    """Run JupyterLab in the foreground; SIGINT or SIGTERM to this process stops it and its
    kernels before this process returns, so nothing is left on the port and no kernel still
    holds the embedded server; a second signal while it shuts down kills it. The caller then
    stops the embedded server it started."""
    import signal

    # A process group of its own: a terminal's Ctrl-C reaches this process only, which stops
    # JupyterLab with SIGTERM, the signal on which it shuts its kernels down before it exits.
    proc = subprocess.Popen(cmd, env=env, process_group=0)
    stopping = False

    def _stop(signum, frame):  # noqa: ARG001 - signal handler signature
        nonlocal stopping
        if stopping:
            proc.kill()
            return
        stopping = True
        raise KeyboardInterrupt

    # JupyterLab's kernels (and their children), seen while it runs: any it leaves are ended.
    kernels: dict[int, str] = {}
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            kernels.update(_descendants(proc.pid))
            try:
                code = proc.wait(1.0)
                break
            except subprocess.TimeoutExpired:
                continue
    except KeyboardInterrupt:
        stopping = True
        kernels.update(_descendants(proc.pid))
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        code = 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _end(kernels, grace)
    return code


def _proc_stat(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat`` after the command name (state, ppid, ...), or None (gone, or not Linux)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _descendants(pid: int) -> dict[int, str]:
    """The processes below ``pid``, each with its start time (so a reused PID is never taken for it)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat and len(stat) > 19:
                children.setdefault(int(stat[1]), []).append(int(entry))
                starts[int(entry)] = stat[19]
    out: dict[int, str] = {}
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out[child] = starts[child]
            todo.append(child)
    return out


def _running(pid: int, start: str) -> bool:
    stat = _proc_stat(pid)
    return bool(stat) and len(stat) > 19 and stat[19] == start and stat[0] != "Z"


def _end(processes: dict[int, str], grace: float) -> None:
    """Wait up to ``grace`` seconds for ``processes`` to exit (JupyterLab shuts its kernels down);
    end those still running (SIGTERM, then SIGKILL)."""
    import signal
    import time

    for sig, wait in ((None, grace), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        alive = [p for p, start in processes.items() if _running(p, start)]
        if not alive:
            return
        for p in alive if sig is not None else []:
            try:
                os.kill(p, sig)
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(_running(p, processes[p]) for p in alive):
            time.sleep(0.05)
