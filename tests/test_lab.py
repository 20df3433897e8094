"""The investigation desk: ``incidentkit investigate NAME`` / ``incidentkit lab`` work in a folder of
copies, never in the shipped notebooks; the lab starts without news pop-ups and stops whole;
the shipped notebooks hold no outputs (nbval's live in tests/nbval_reference); kit errors in a
notebook read like the CLI's."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import pytest

from incidentkit import cli, config, lab

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "nbval_reference"
SHIPPED = sorted(config.notebooks_dir().glob("[0-9][0-9]-*.ipynb"))
TODAY = datetime.now(timezone.utc).date().isoformat()


def _digests() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in SHIPPED}


def _investigate(capsys, *args) -> tuple[int, str, str]:
    code = cli.main(["investigate", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A current directory of its own, without DATABASE_URL."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv(lab.INVESTIGATIONS_ENV, raising=False)
    return tmp_path


def _code(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


# -- the investigation folder ------------------------------------------------------------------
def test_investigate_copies_the_notebooks_and_writes_parameters(workdir, capsys):
    before = _digests()
    code, out, err = _investigate(capsys, "fk-race", "--no-lab")
    assert code == 0, err
    folder = workdir / "investigations" / f"{TODAY}-fk-race"
    assert out.strip() == str(folder)
    assert f"investigation created: {folder}" in err
    assert sorted(p.name for p in folder.glob("*.ipynb")) == [p.name for p in SHIPPED]
    assert oct(folder.stat().st_mode & 0o777) == oct(0o700)  # production user ids: private

    params = tomllib.loads((folder / "parameters.toml").read_text())
    declared = {}
    for shipped in SHIPPED:
        declared.update(lab.declared_parameters(shipped))
    assert set(params) == {k for k, (v, _) in declared.items() if v is not None}
    assert params["database_url_env"] == "" and params["logs"] == [] and params["window_seconds"] == 5.0

    for shipped in SHIPPED:
        template, copy = nbformat.read(shipped, 4), nbformat.read(folder / shipped.name, 4)
        injected = [c for c in copy.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert len(injected) == 1
        at = copy.cells.index(injected[0])
        assert "parameters" in copy.cells[at - 1].metadata.get("tags", [])
        # the injected cell sets exactly the parameters this notebook declares, from parameters.toml
        ns: dict = {}
        exec(injected[0].source, ns)  # noqa: S102 - the kit's own generated assignments
        mine = {k for k, (v, _) in lab.declared_parameters(shipped).items() if v is not None}
        assert {k for k in ns if not k.startswith("__")} == mine
        assert all(ns[k] == params[k] for k in mine)
        # otherwise the template, cell for cell, without outputs
        rest = copy.cells[:at] + copy.cells[at + 1:]
        assert [(c.cell_type, c.source) for c in rest] == [(c.cell_type, c.source) for c in template.cells]
        assert all(c.outputs == [] and c.execution_count is None for c in _code(copy))
    assert _digests() == before  # the templates are only read


def test_a_new_investigation_reads_the_database_whose_variable_is_set(workdir, capsys, monkeypatch):
    url = "postgresql://reader:s3cret-pw@db.example.com:5432/app"
    monkeypatch.setenv("IK_TEST_URL", url)
    code, out, err = _investigate(capsys, "prod", "--no-lab", "--database-url-env", "IK_TEST_URL")
    assert code == 0, err
    folder = Path(out.strip())
    assert tomllib.loads((folder / "parameters.toml").read_text())["database_url_env"] == "IK_TEST_URL"
    # the variable's name goes into the folder, never the URL or its password
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"s3cret" not in data and b"db.example.com" not in data, path
    assert "s3cret" not in out + err


def test_investigations_are_git_ignored_wherever_they_are_created(workdir, capsys):
    # In a repository of the user's own (its .gitignore knows nothing of the kit) ...
    subprocess.run(["git", "init", "-q", str(workdir)], check=True)
    assert _investigate(capsys, "fk-race", "--no-lab")[0] == 0
    status = subprocess.run(["git", "-C", str(workdir), "status", "--porcelain", "--untracked-files=all"],
                            capture_output=True, text=True, check=True).stdout
    assert status == "", status
    # ... and in the kit's checkout, by its own .gitignore (without the folder's)
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "--no-index", "-q",
                              f"investigations/{TODAY}-x/01-diagnosis.ipynb"])
    assert ignored.returncode == 0


@pytest.mark.parametrize("name", ["../x", "a/b", "..", "a..b", ".hidden", "-x", "a b", "x" * 81, "é", "a\\b",
                                  "a\nb", "/abs"])
def test_bad_names_are_refused_in_one_line(workdir, capsys, name):
    code, out, err = _investigate(capsys, "--no-lab", "--", name) if name.startswith("-") else \
        _investigate(capsys, name, "--no-lab")
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert not (workdir / "investigations").exists() or not any((workdir / "investigations").iterdir())


def test_check_name_accepts_the_safe_set():
    for name in ("fk-race", "FK_race.2", "2025-10-08-incident", "x" * 80):
        assert lab.check_name(name) == name


def test_reopening_keeps_the_users_notebooks(workdir, capsys):
    code, out, _ = _investigate(capsys, "fk-race", "--no-lab")
    folder = Path(out.strip())
    # The user edits a notebook, and the injected parameters of another by hand ...
    diag = folder / "01-diagnosis.ipynb"
    nb = nbformat.read(diag, 4)
    nb.cells.append(nbformat.v4.new_code_cell("my_own_query = 42"))
    nbformat.write(nb, diag)
    timeline = folder / "03-user-timeline.ipynb"
    nb = nbformat.read(timeline, 4)
    cell = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    cell.source += 'user_id = "did:privy:mine"\n'
    nbformat.write(nb, timeline)
    # ... and changes parameters.toml, then reopens it (the same name, a later day)
    params = folder / "parameters.toml"
    params.write_text(params.read_text().replace("window_seconds = 5.0", "window_seconds = 2.5")
                      .replace("sample_limit = 20", "sample_limit = 7"))
    inv = lab.open_investigation("fk-race", today="2099-01-01")
    assert inv.folder == folder and not inv.created
    assert any("03-user-timeline.ipynb" in n and "edited" in n for n in inv.notes)

    diag_nb = nbformat.read(diag, 4)
    assert diag_nb.cells[-1].source == "my_own_query = 42"  # the user's edit is kept
    injected = next(c for c in diag_nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "sample_limit = 7" in injected.source  # an unedited injected cell follows the file
    kept = next(c for c in nbformat.read(timeline, 4).cells if "injected-parameters" in c.metadata.get("tags", []))
    assert 'user_id = "did:privy:mine"' in kept.source and "window_seconds = 5.0" in kept.source
    # a notebook the user deleted comes back from its template
    (folder / "02-affected-users.ipynb").unlink()
    lab.open_investigation(f"{TODAY}-fk-race")
    assert (folder / "02-affected-users.ipynb").is_file()


def test_lab_without_a_name_opens_todays_scratch(workdir, capsys):
    older = workdir / "investigations" / "2000-01-01-scratch"
    older.mkdir(parents=True)
    assert cli.main(["investigate", "scratch", "--no-lab"]) == 0
    assert Path(capsys.readouterr().out.strip()) == older  # investigate reopens the newest of that name
    inv = lab.open_investigation(lab.SCRATCH, exact=True)  # what `incidentkit lab` opens
    assert inv.folder.name == f"{TODAY}-scratch" and inv.created


@pytest.mark.parametrize("text, says", [("user_idd = 'x'\n", "no notebook has the parameter user_idd"),
                                        ("logs = [\n", "is not valid TOML")])
def test_a_bad_parameters_file_is_one_line(workdir, capsys, text, says):
    code, out, _ = _investigate(capsys, "fk", "--no-lab")
    (Path(out.strip()) / "parameters.toml").write_text(text)
    code, out, err = _investigate(capsys, "fk", "--no-lab")
    assert code == 2 and len(err.splitlines()) == 1 and out == ""  # one line, nothing opened
    assert err.startswith("error: ") and says in err


def test_parameters_toml_round_trips_every_kind_of_value():
    values = {"s": 'a "quoted" \\ back\nslash é', "f": 5.0, "i": 20, "b": True, "l": ["x", "y"],
              "d": {"statement_ms": 1000, "odd key": 2}, "e": {}, "n": None}
    text = lab.parameters_toml(values, {"s": "a comment"})
    assert tomllib.loads(text) == {k: v for k, v in values.items() if v is not None}


# -- the shipped notebooks ---------------------------------------------------------------------
def _checked(cell) -> bool:
    return any(line.strip().lstrip("#").strip() == "NBVAL_CHECK_OUTPUT" for line in cell.source.splitlines())


def test_shipped_notebooks_hold_no_outputs():
    assert SHIPPED
    for path in SHIPPED:
        nb = nbformat.read(path, 4)
        for cell in _code(nb):
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name} cell {cell.get('id')}"
        assert sum("parameters" in c.metadata.get("tags", []) for c in nb.cells) == 1, path.name


def test_every_checked_cell_has_a_reference_output():
    checked = 0
    for path in SHIPPED:
        cells = [c for c in _code(nbformat.read(path, 4)) if _checked(c)]
        if not cells:
            continue
        ref = {c.get("id"): c for c in _code(nbformat.read(REFERENCE / path.name, 4))}
        for cell in cells:
            checked += 1
            assert cell.get("id") in ref, f"{path.name}: no reference for {cell.get('id')}"
            assert ref[cell.get("id")].outputs and ref[cell.get("id")].execution_count, cell.get("id")
    assert checked >= 5


def test_every_notebook_installs_the_desk_before_the_kit_runs():
    for path in SHIPPED:
        code = [c.source for c in _code(nbformat.read(path, 4)) if "parameters" not in c.get("metadata", {}).get("tags", [])]
        first = code[0]
        assert "import incidentkit as ik" in first and "ik.notebook.desk()" in first, path.name
        assert first.index("ik.notebook.desk()") < min((first.find(s) for s in ("connect(", "racelab.run")
                                                         if s in first), default=len(first))


@pytest.mark.slow
def test_nbval_compares_against_the_reference_and_fails_when_it_changes(tmp_path):
    """The injection bites: a tampered reference value fails its cell, the untouched one passes."""
    tampered = tmp_path / "reference"
    tampered.mkdir()
    name = "01-diagnosis.ipynb"
    nb = nbformat.read(REFERENCE / name, 4)
    figures = next(c for c in _code(nb) if _checked(c) and "figures_frame" in c.source)
    text = figures.outputs[0]["data"]["text/markdown"]
    assert "| 179 |" in text
    figures.outputs[0]["data"]["text/markdown"] = text.replace("| 179 |", "| 178 |", 1)
    nbformat.write(nb, tampered / name)
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", "--color=no",
                          f"--nbval-reference={tampered}", f"notebooks/{name}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    out = run.stdout
    cells = [c for c in _code(nbformat.read(config.notebooks_dir() / name, 4))]
    n_figures = next(i for i, c in enumerate(cells) if c.get("id") == figures.get("id"))
    n_keys = next(i for i, c in enumerate(cells) if _checked(c) and "foreign_keys_frame" in c.source)
    assert run.returncode == 1, out[-3000:]
    assert re.search(rf"FAILED notebooks/{name}::Cell {n_figures}\b", out), out[-3000:]
    assert "Cell outputs differ" in out and "178" in out
    assert re.search(rf"PASSED notebooks/{name}::Cell {n_keys}\b", out), out[-3000:]
    assert len(re.findall(r"^FAILED ", out, re.M)) == 1


# -- kit errors in a notebook ------------------------------------------------------------------
def _tiny_notebook():
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("import incidentkit as ik\nik.notebook.desk()"),
                nbformat.v4.new_code_cell("ik.notebook.connect(' DATABASE_URL')"),
                nbformat.v4.new_code_cell("{}['no such key']")]
    return nb


@pytest.mark.slow
def test_a_kit_error_shows_one_line_and_still_fails_the_run(tmp_path):
    import nbclient
    import papermill

    nb = _tiny_notebook()
    nbclient.NotebookClient(nb, allow_errors=True, timeout=120, kernel_name="python3").execute()
    (kit_error,), (other,) = nb.cells[1].outputs, nb.cells[2].outputs
    assert kit_error.output_type == "error" and kit_error.ename == "ConfigError"
    assert kit_error.traceback == ["error: not a valid environment variable name: ' DATABASE_URL'"]
    assert other.ename == "KeyError" and len(other.traceback) > 1  # other errors keep their traceback
    # Under papermill the cell still fails the run, at that cell.
    source = tmp_path / "tiny.ipynb"
    nb.cells = nb.cells[:2] + [nbformat.v4.new_code_cell("reached = True")]
    nbformat.write(nb, source)
    with pytest.raises(papermill.PapermillExecutionError) as e:
        papermill.execute_notebook(str(source), str(tmp_path / "out.ipynb"), progress_bar=False, kernel_name="python3")
    assert e.value.ename == "ConfigError" and e.value.traceback == [kit_error.traceback[0]]
    ran = nbformat.read(tmp_path / "out.ipynb", 4)
    assert not _code(ran)[-1].outputs and _code(ran)[-1].execution_count is None  # stopped there


# -- the lab: clean start, clean stop ----------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str, method: str = "GET", body: bytes | None = None):
    req = urllib.request.Request(url, method=method, data=body, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        data = r.read()
    return json.loads(data) if data[:1] in (b"{", b"[") else data.decode()


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def own_cache():
    """A cache directory (so an embedded server) of the test's own; any server left in it is stopped.
    Not under tmp_path: as root the server runs as its own user, which must traverse to it, and
    pytest makes /tmp/pytest-of-<user> private again whenever a session starts."""
    from incidentkit.db import embedded

    cache = Path(tempfile.mkdtemp(prefix="incidentkit-lab-test-"))
    yield cache
    for data_dir in cache.glob("pg*"):
        if (data_dir / "postmaster.pid").exists():
            embedded.EmbeddedServer(data_dir).stop()
    shutil.rmtree(cache, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["kill -TERM", "Ctrl-C"])
def test_the_lab_starts_clean_and_stops_everything_it_started(tmp_path, own_cache, stop):
    """`incidentkit lab` on the demo, with its own embedded server: JupyterLab rooted in today's
    scratch investigation with news and update checks off; a kernel reaches the demo. SIGTERM to
    the command (``kill -TERM``), or SIGINT to its whole process group as a terminal's Ctrl-C
    sends it, stops JupyterLab, its kernels and the embedded server the lab started."""
    port, token = _free_port(), "ik-test-token"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(INCIDENTKIT_CACHE_DIR=str(own_cache), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTER_CONFIG_DIR=str(tmp_path / "config"), JUPYTER_DATA_DIR=str(tmp_path / "data"))
    before = _digests()
    proc = subprocess.Popen([shutil.which("incidentkit"), "lab", "--no-browser", "--port", str(port), "--",
                             f"--IdentityProvider.token={token}"], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    family: set[int] = set()
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                _get(f"{base}/api/status", token)
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "JupyterLab did not start"
                time.sleep(0.3)
        # Rooted in today's scratch investigation: the copies and their parameters, nothing else.
        listing = _get(f"{base}/api/contents", token)
        assert {i["name"] for i in listing["content"]} == {p.name for p in SHIPPED} | {"parameters.toml"}
        assert (tmp_path / "investigations" / f"{TODAY}-scratch" / "01-diagnosis.ipynb").is_file()
        # What JupyterLab serves: the news prompt, news and update checks off.
        settings = _get(f"{base}/lab/api/settings/@jupyterlab/apputils-extension:notification", token)
        props = settings["schema"]["properties"]
        assert props["fetchNews"]["default"] == "false" and props["checkForUpdates"]["default"] is False
        page = _get(f"{base}/lab", token)
        config_data = json.loads(re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
                                           page, re.S).group(1))
        assert config_data["news"] == {"disabled": True}
        assert _get(f"{base}/lab/api/update", token)["notification"] is None  # no update check
        # A kernel, as a notebook would start it, reads the demo (and takes a lease on the server).
        kernel = _get(f"{base}/api/kernels", token, "POST", b"{}")
        from jupyter_client import BlockingKernelClient

        client = BlockingKernelClient(connection_file=str(tmp_path / "runtime" / f"kernel-{kernel['id']}.json"))
        client.load_connection_file()
        client.start_channels()
        try:
            printed = []
            reply = client.execute_interactive(
                "import incidentkit as ik\nprint(ik.diagnose(ik.notebook.connect()).total_users)", timeout=120,
                output_hook=lambda m: printed.append(m["content"].get("text", "")))
            assert reply["content"]["status"] == "ok" and "".join(printed).strip() == "179"
        finally:
            client.stop_channels()
        assert list(own_cache.glob("pg*/postmaster.pid")), "the lab did not start its embedded server"
        family = _descendants(proc.pid)
        assert len(family) >= 2  # JupyterLab and the kernel
    finally:
        if stop == "Ctrl-C":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    stderr = proc.stderr.read().decode(errors="replace")
    assert proc.returncode == 0, stderr[-2000:]
    with pytest.raises(OSError):
        _get(f"{base}/api/status", token)
    left = [pid for pid in family if _alive(pid)]
    assert not left, f"left running: {left}"
    assert not list(own_cache.glob("pg*/postmaster.pid")), f"the lab's embedded server still runs: {stderr[-1500:]}"
    assert _digests() == before
