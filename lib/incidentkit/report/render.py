"""Dated reports: papermill executes the notebooks, nbconvert turns them into HTML and Markdown.

``render_report`` writes ``OUT/YYYY-MM-DD/`` holding, per notebook, the executed ``.ipynb``,
a self-contained ``.html`` (figures inline, code hidden unless ``show_code``) and a ``.md``
(pipe tables, figures as PNG files beside it behind relative links), plus an entry page
(``index.html``, ``README.md``) linking them in reading order.

A report folder appears whole or not at all: everything is written into a hidden staging
folder in ``OUT`` and renamed into place at the end; a second run for the same date gets
a suffixed folder (``2025-10-08-2``). When a notebook fails, the staging folder, with the
failing cell marked by papermill, is moved to ``OUT/failed/<date>-<time>/`` and
:class:`ReportFailed` says where; nothing is published as a dated report.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import html
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import __version__
from .. import config
from ..exceptions import ConfigError, ReportFailed
from ..text import first_line
from .page import CSP, CSP_META as _CSP_META, has_csp

TEMPLATES_DIR = config.PACKAGE_DIR / "templates"



@dataclass
class NotebookRun:
    """One notebook to execute: its source, the output name, and its parameters."""

    notebook: Path
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    title: str = ""
    status: str = "not run"  # "ok", "failed" once executed
    seconds: float | None = None


@dataclass
class ReportResult:
    folder: Path
    date: str
    files: list[Path]
    runs: list[NotebookRun]
    manifest: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[str]:
        return [str(self.folder)] + [f"  {p}" for p in self.files]


def _kernel_manager_class(runtime_dir: Path):
    """Kernels over IPC sockets, not TCP: nothing listens on the network, and ipykernel has
    nothing to warn about on stderr (which would break the CLI's one-line error contract).

    The sockets live in ``runtime_dir``, the run's private folder: two runs at once never
    share a socket name, and nothing is left in the notebooks' folder."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class IpcKernelManager(AsyncKernelManager):
        @default("transport")
        def _transport_default(self):
            return "ipc"

        @default("ip")
        def _ip_default(self):
            return str(runtime_dir / f"k{secrets.token_hex(4)}")

    return IpcKernelManager


def parse_date(value: str | None) -> str:
    """``YYYY-MM-DD`` (validated) or today's date in UTC."""
    if not value:
        return dt.datetime.now(dt.timezone.utc).date().isoformat()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ConfigError(f"--date must be YYYY-MM-DD (got {value!r})")
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ConfigError(f"--date is not a real date: {value!r}") from None


def notebook_path(name: str) -> Path:
    """A numbered notebook of the kit by file name (``01-diagnosis.ipynb``)."""
    path = config.notebooks_dir() / name
    if not path.is_file():
        raise ConfigError(f"notebook not found: {path} (set INCIDENTKIT_NOTEBOOKS to the kit's notebooks folder)")
    return path


def declared_parameters(path: Path) -> set[str]:
    """The names the notebook's ``parameters`` cell declares."""
    import papermill

    return set(papermill.inspect_notebook(str(path)).keys())


def progress_printer(enabled: bool | None = None) -> Callable[[str], None]:
    """Progress on a terminal, silence otherwise."""
    on = sys.stderr.isatty() if enabled is None else enabled

    def say(message: str) -> None:
        if on:
            print(f"  {message}", file=sys.stderr, flush=True)

    return say


def _writable_out(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create the reports directory {out_dir}: {e.strerror or e}") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"the reports directory {out_dir} is not writable")
    return out_dir


def _publish(staging: Path, out_dir: Path, date: str) -> Path:
    """Rename the finished staging folder to ``out/date`` (or ``date-2``, ...), atomically."""
    for n in range(1, 1000):
        target = out_dir / (date if n == 1 else f"{date}-{n}")
        if target.exists():
            continue
        try:
            os.rename(staging, target)  # fails if another run claimed ``target`` meanwhile
            return target
        except OSError:
            if target.exists():
                continue
            raise
    raise ReportFailed(f"too many reports for {date} in {out_dir}")


def _fail(staging: Path, out_dir: Path, message: str) -> ReportFailed:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d-%H%M%S")
    failed_root = out_dir / "failed"
    failed_root.mkdir(parents=True, exist_ok=True)
    target = failed_root / stamp
    n = 1
    while target.exists():
        n += 1
        target = failed_root / f"{stamp}-{n}"
    shutil.move(str(staging), str(target))
    return ReportFailed(f"{message}; the executed notebooks, error marked, are in {target}", failed_dir=target)


class Converter:
    """nbconvert exporters, created once per run and used in-process for every notebook."""

    def __init__(self, show_code: bool = False):
        from nbconvert import HTMLExporter, MarkdownExporter

        self.html = HTMLExporter(template_name="incidentkit", extra_template_basedirs=[str(TEMPLATES_DIR)],
                                 exclude_input=not show_code, exclude_input_prompt=True,
                                 exclude_output_prompt=True)
        self.markdown = MarkdownExporter(exclude_input=not show_code)
        # Markdown reports prefer our pipe tables (text/markdown) over raw HTML renderings.
        self.markdown.display_data_priority = ["text/markdown", "image/png", "image/svg+xml", "image/jpeg",
                                               "text/plain", "text/html"]
        self.show_code = show_code

    def write(self, nb, folder: Path, stem: str, title: str) -> list[Path]:
        from .notebook import RECORD_MIME

        written = []
        nb = copy.deepcopy(nb)
        for cell in nb.cells:  # recorded figures stay in the .ipynb; HTML and Markdown show nothing for them
            if cell.get("outputs"):
                cell.outputs = [o for o in cell.outputs if RECORD_MIME not in (o.get("data") or {})]
        nb.metadata["title"] = title or stem
        body, _ = self.html.from_notebook_node(nb, resources={"metadata": {"name": stem}, "incidentkit_csp": CSP})
        if not has_csp(body):  # the template is what puts it there; never publish a page without it
            raise ReportFailed(f"{stem}: the HTML template lost its Content-Security-Policy")
        html_path = folder / f"{stem}.html"
        html_path.write_text(body, encoding="utf-8")
        written.append(html_path)

        files_dir = f"{stem}_files"
        body, resources = self.markdown.from_notebook_node(
            nb, resources={"output_files_dir": files_dir, "unique_key": stem, "metadata": {"name": stem}})
        for rel, data in (resources.get("outputs") or {}).items():
            target = folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            written.append(target)
        md_path = folder / f"{stem}.md"
        md_path.write_text(_clean_markdown(body), encoding="utf-8")
        written.append(md_path)
        return written


def _clean_markdown(body: str) -> str:
    """Drop raw ``<style>`` blocks and collapse runs of blank lines."""
    body = re.sub(r"<style[^>]*>.*?</style>", "", body, flags=re.S | re.I)
    body = re.sub(r"\n{3,}", "\n\n", body)
    return body.strip() + "\n"


def _redact_notebook(path: Path, redactor) -> None:
    """Pseudonymise every text field of an executed notebook (parameters, outputs, metadata)."""
    text = path.read_text(encoding="utf-8")
    path.write_text(redactor.text(text), encoding="utf-8")


def write_entry_page(folder: Path, runs: list[NotebookRun], date: str, title: str) -> list[Path]:
    """``README.md`` and ``index.html`` linking the run's outputs in reading order."""
    md = [f"# {title} — {date}", "", f"Generated by incidentkit {__version__}. Read in this order:", ""]
    items = []
    for i, run in enumerate(runs, 1):
        label = run.title or run.name
        md.append(f"{i}. [{label}]({run.name}.md) ([HTML]({run.name}.html), [notebook]({run.name}.ipynb))")
        items.append(f'<li><a href="{html.escape(run.name)}.html">{html.escape(label)}</a> '
                     f'(<a href="{html.escape(run.name)}.md">Markdown</a>, '
                     f'<a href="{html.escape(run.name)}.ipynb">notebook</a>)</li>')
    readme = folder / "README.md"
    readme.write_text("\n".join(md) + "\n", encoding="utf-8")
    page = folder / "index.html"
    page.write_text(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">" + _CSP_META +
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{html.escape(title)} — {date}"
        "</title><style>body{font-family:system-ui,sans-serif;max-width:900px;margin:2em auto;padding:0 1em;"
        "line-height:1.5}</style></head><body>"
        f"<h1>{html.escape(title)} — {date}</h1><p>Generated by incidentkit {__version__}. Read in this order:</p>"
        f"<ol>{''.join(items)}</ol></body></html>\n",
        encoding="utf-8",
    )
    return [readme, page]


# -- leftovers of runs that died --------------------------------------------------------------
_STAGING = re.compile(r"^\.staging-\d{4}-\d{2}-\d{2}-(\d+)-[0-9a-f]+$")
_PRIVATE_PREFIX = "incidentkit-run-"


def clean_leftovers(out_dir: Path) -> list[Path]:
    """Remove what runs killed with ``kill -9`` left: their staging folders in ``out_dir`` and
    their private folders (kernel sockets, handed-on results) in the temporary directory.
    Only folders whose process is gone are touched, so a run going on beside this one is safe."""
    from ..db.embedded import pid_alive

    removed = []
    candidates = [(d, _STAGING.match(d.name)) for d in Path(out_dir).glob(".staging-*")]
    tmp = Path(tempfile.gettempdir())
    candidates += [(d, re.match(rf"^{_PRIVATE_PREFIX}(\d+)-", d.name)) for d in tmp.glob(f"{_PRIVATE_PREFIX}*")]
    for folder, m in candidates:
        if m and folder.is_dir() and not folder.is_symlink() and not pid_alive(int(m.group(1))):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


# -- kernels started ahead of their notebooks -------------------------------------------------
def _skip_unused_imports() -> None:
    """Keep out of this process an import nothing here uses: nbformat validates notebooks with
    jsonschema's Draft 4 validator, which checks no ``iri`` format, yet importing jsonschema
    builds the grammar of ``rfc3987_syntax`` for that format (about a second of CPU, a third of
    papermill's own start-up). Without it jsonschema simply has no ``iri`` checker."""
    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)


#: The kernels' command-line options: import what the notebooks' cells use
#: (:func:`incidentkit.report.notebook.warm`) while they wait for their notebook (ipykernel runs
#: it before it answers, without counting an execution or leaving a name behind); and keep the
#: input history in memory, as nbclient has the kernels it starts do (several kernels at once
#: never share the user's history database).
KERNEL_OPTIONS = ["--IPKernelApp.exec_lines=import incidentkit.report.notebook as _ik_warm; "
                  "_ik_warm.warm(); del _ik_warm", "--HistoryManager.hist_file=:memory:"]


def _engine_name() -> str:
    """papermill's nbclient engine, on a kernel the run started (``km``) and still owns: the
    engine leaves it running, the kernel's thread shuts it down once the notebook is saved.

    The executed notebook is written once, complete (or with its failing cell marked), instead of
    at every cell's start and end: nobody watches it grow, and an interrupted run's staging
    folder is removed anyway."""
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines
    from papermill.log import logger
    from papermill.utils import merge_kwargs, remove_args

    class SavedOnce(NotebookExecutionManager):
        complete = False

        def save(self, **kwargs):
            if kwargs.get("nb") is not None:
                self.nb = kwargs["nb"]
            if self.complete:
                super().save()

        def notebook_complete(self, **kwargs):
            self.complete = True
            super().notebook_complete(**kwargs)

    class PrestartedEngine(NBClientEngine):
        @classmethod
        def execute_notebook(cls, nb, kernel_name, output_path=None, progress_bar=False, log_output=False,
                             autosave_cell_every=30, **kwargs):
            nb_man = SavedOnce(nb, output_path=output_path, progress_bar=progress_bar, log_output=log_output,
                               autosave_cell_every=autosave_cell_every)
            nb_man.notebook_start()
            try:
                cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
            finally:
                nb_man.cleanup_pbar()
                nb_man.notebook_complete()
            return nb_man.nb

        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None,
                                     stderr_file=None, start_timeout=60, execution_timeout=None, **kwargs):
            kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
            client = PapermillNotebookClient(nb_man, **merge_kwargs(
                kwargs, timeout=execution_timeout, startup_timeout=start_timeout, kernel_name=kernel_name,
                log=logger, log_output=log_output, stdout_file=stdout_file, stderr_file=stderr_file))
            try:
                return client.execute()
            finally:
                if client.kc is not None:
                    client.kc.stop_channels()

    papermill_engines.register(_ENGINE, PrestartedEngine)
    return _ENGINE


_ENGINE = "incidentkit-prestarted"


# -- kernels forked from one warm process ------------------------------------------------------
#: What a kernel process is, to jupyter_client: this stub (stdlib only, no site: it starts in
#: milliseconds). It hands its connection file, options, directory, environment and streams to
#: the run's kernel server (:func:`kernel_server`), which forks a kernel for it from a process
#: that has imported everything already; the stub then stands for that kernel: it passes on the
#: signals it gets and exits with the kernel's status. Killed, it closes its socket, and the
#: server kills the kernel.
_STUB = r"""
import json, os, signal, socket, sys, time
s = socket.socket(socket.AF_UNIX)
for attempt in range(3000):  # the server binds its socket once started: wait for it (at most a minute)
    try:
        s.connect(sys.argv[1])
        break
    except (FileNotFoundError, ConnectionRefusedError):
        time.sleep(0.02)
else:
    sys.exit(69)
socket.send_fds(s, [json.dumps({"connection_file": sys.argv[2], "argv": sys.argv[3:], "cwd": os.getcwd(),
                                "env": dict(os.environ)}).encode()], [0, 1, 2])
f = s.makefile("rb")
pid = int(f.readline() or 0)
if not pid:
    sys.exit(70)
def forward(signum, frame):
    try:
        os.kill(pid, signum)
    except OSError:
        pass
for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
    signal.signal(signum, forward)
status = f.readline()
sys.exit(int(status) if status.strip() else 1)
"""


def kernel_server(path: str) -> None:
    """``python -c '...kernel_server(PATH)'``: import what a kernel and the notebooks' cells use,
    once; then, for each stub connecting to the socket ``PATH``, fork a kernel with the stub's
    connection file, directory, environment and streams. One thread: it forks, reaps its
    children, reports each one's exit to its stub, kills a kernel whose stub went away, and
    ends (killing its kernels) when the report's process does."""
    import atexit
    import json
    import selectors
    import signal
    import socket

    parent = os.getppid()
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(64)
    import importlib

    from ipykernel.kernelapp import IPKernelApp

    importlib.import_module("ipykernel.ipkernel")  # what every kernel imports first

    from .notebook import warm

    warm()
    sel = selectors.DefaultSelector()
    sel.register(server, selectors.EVENT_READ)
    kernels: dict[int, socket.socket] = {}  # kernel pid -> its stub's connection
    while True:
        for key, _ in sel.select(timeout=0.1):
            if key.fileobj is server:
                conn, _ = server.accept()
                try:
                    msg, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
                    request = json.loads(msg)
                except (OSError, ValueError):
                    conn.close()
                    continue
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:  # the kernel
                    try:
                        sel.close()
                        server.close()
                        conn.close()
                        for other in kernels.values():
                            other.close()
                        for target, fd in enumerate(fds):
                            os.dup2(fd, target)
                            os.close(fd)
                        os.setsid()
                        os.chdir(request["cwd"])
                        os.environ.clear()
                        os.environ.update(request["env"])
                        os.environ["JPY_PARENT_PID"] = str(os.getppid())
                        # The kernel app read JPY_PARENT_PID when the server imported it: say it
                        # again (a kernel with a parent prints no banner, and exits if it dies).
                        sys.argv = ["ipykernel_launcher", "-f", request["connection_file"], *request.get("argv", []),
                                    f"--IPKernelApp.parent_handle={os.getppid()}"]
                        IPKernelApp.launch_instance(argv=sys.argv[1:])
                    finally:  # exit as a kernel exits (its exit functions run), never back into this loop
                        with contextlib.suppress(BaseException):
                            atexit._run_exitfuncs()
                        os._exit(0)
                for fd in fds:
                    os.close(fd)
                conn.sendall(f"{pid}\n".encode())
                kernels[pid] = conn
                sel.register(conn, selectors.EVENT_READ, pid)
            else:  # a stub's socket: it only ever closes (the stub went away)
                pid = key.data
                if not key.fileobj.recv(64):
                    sel.unregister(key.fileobj)
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
        while kernels:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if not pid:
                break
            conn = kernels.pop(pid, None)
            if conn is not None:
                with contextlib.suppress(OSError, ValueError, KeyError):
                    sel.unregister(conn)
                with contextlib.suppress(OSError):
                    conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
                conn.close()
        if os.getppid() != parent:  # the report's process is gone: so are its kernels
            for pid in kernels:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            return


#: ``0`` in the environment: each kernel is a process of its own, started from scratch (as
#: JupyterLab starts them), instead of forked from the run's kernel server.
FORK_KERNELS_ENV = "INCIDENTKIT_FORK_KERNELS"


class _KernelServer:
    """The run's kernel server (:func:`kernel_server`), started with the run, stopped with it; and
    the kernel spec whose argv is the stub, for the run's kernel managers."""

    def __init__(self, run: "_Run"):
        import subprocess

        from jupyter_client.kernelspec import KernelSpec

        self.socket = str(run.private / "kernels.sock")
        env = {**run.kernel_env(), "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
        self.process = subprocess.Popen(
            [sys.executable, "-c", f"from incidentkit.report.render import kernel_server; kernel_server({self.socket!r})"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=os.getcwd())
        # (The kernels write to their stubs' streams; the server itself has nothing to say.)
        self.spec = KernelSpec(argv=[sys.executable, "-S", "-c", _STUB, self.socket, "{connection_file}"],
                               display_name="Python 3", language="python", interrupt_mode="signal")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except Exception:  # noqa: BLE001 - it must not outlive the run
            self.process.kill()
            self.process.wait()


class _Kernel:
    """One kernel and its thread: the kernel starts (and imports what the cells use) as soon as
    the run asks for it, or once the kernels it comes ``after`` are warm; then it waits for its
    notebook; the notebook executes on it; then the kernel is shut down, off the report's path.
    Everything happens in the one thread, whose event loop the kernel's sockets belong to. A
    kernel never runs a second notebook: each starts fresh."""

    def __init__(self, run: "_Run", after: list["_Kernel"] | None = None):
        import queue
        import threading

        self.run = run
        self.after = list(after or [])
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.notebook: NotebookRun | None = None
        self.warm_file = run.runtime / f"warm-{secrets.token_hex(6)}"
        self.failed = self.cancelled = False
        self.thread = threading.Thread(target=self._main, name="notebook-kernel", daemon=True)
        self.thread.start()

    def give(self, notebook: NotebookRun | None) -> None:
        """Execute ``notebook`` on this kernel (None: not needed, stop it)."""
        self.notebook = notebook
        self.cancelled = notebook is None
        self.inbox.put(notebook)

    def warm(self) -> bool:
        """Started and done importing (or failed to start: nothing to wait for)."""
        return self.failed or self.warm_file.exists()

    def _main(self) -> None:
        from jupyter_core.utils import run_sync

        from .notebook import WARM_DONE_ENV

        deadline = time.monotonic() + 20  # a kernel that never says it is warm does not hold the others back
        while self.inbox.empty() and time.monotonic() < deadline and not all(k.warm() for k in self.after):
            time.sleep(0.05)
        if self.cancelled:  # not needed after all (the run ended first): never started
            self.failed = True
            return
        km = started = None
        try:
            km = self.run.kernel_manager()
            run_sync(km.start_kernel)(extra_arguments=list(KERNEL_OPTIONS), cwd=os.getcwd(),
                                      env={**self.run.kernel_env(), WARM_DONE_ENV: str(self.warm_file)})
            started = True
        except Exception as e:  # noqa: BLE001 - reported as the failure of the notebook it was for
            started, self.failed = e, True
        notebook = self.inbox.get()
        try:
            if notebook is not None:
                failure = (self.run.papermill(notebook, km) if started is True
                           else f"{notebook.name} failed: the kernel did not start: {type(started).__name__}: "
                                f"{first_line(started)[:300]}")
                self.run.finished.put((notebook, failure))
        except BaseException as e:  # noqa: BLE001 - the run waits for every notebook it gave
            self.run.finished.put((notebook, f"{notebook.name} failed: {type(e).__name__}: {first_line(e)[:300]}"))
        finally:
            if started is True:
                run_sync(_stop_kernel)(km, notebook is not None)


async def _stop_kernel(km, used: bool) -> None:
    """A kernel whose notebook is done is asked to shut down (no interrupt: it is idle); one that
    never got a notebook is terminated. Either is killed if it has not gone within the manager's
    wait; its connection file and sockets are removed."""
    import signal

    try:
        if used:
            await km.request_shutdown()
        else:
            await km.signal_kernel(signal.SIGTERM)
        await km.finish_shutdown()
    except Exception:  # noqa: BLE001 - already gone
        pass
    finally:
        await km.cleanup_resources()


# -- one report run ----------------------------------------------------------------------------
class _Run:
    """One report run: a staging folder in ``out_dir`` (renamed into place at the end) and a
    private folder (0700, outside ``out_dir``) for the kernels' sockets and the results the
    notebooks hand to the incident document.

    Notebooks execute as soon as what they read is there, each on a kernel of its own started
    ahead of it (:class:`_Kernel`): :meth:`spare` starts kernels for notebooks not planned yet,
    :meth:`start` gives notebooks their kernels, :meth:`wait` converts each executed notebook to
    HTML and Markdown as it finishes, while the others run. The entry page lists them in
    reading order."""

    def __init__(self, out_dir: Path, date: str, show_code: bool, redactor, say):
        import queue

        from .notebook import SHARE_ENV

        _skip_unused_imports()
        self.out_dir, self.date, self.show_code, self.redactor, self.say = out_dir, date, show_code, redactor, say
        clean_leftovers(out_dir)
        self.private = Path(tempfile.mkdtemp(prefix=f"{_PRIVATE_PREFIX}{os.getpid()}-"))
        self.share = self.private / "shared"
        self.share.mkdir()
        self.staging = out_dir / f".staging-{date}-{os.getpid()}-{secrets.token_hex(3)}"
        self.staging.mkdir()
        self.converter = Converter(show_code=show_code)
        self.kernel_manager_class = _kernel_manager_class(self.private)
        self.runtime = self.private / "runtime"  # the kernels' connection files, their "warm" marks
        self.runtime.mkdir()
        self.engine = _engine_name()
        self.env = {SHARE_ENV: str(self.share), "JUPYTER_RUNTIME_DIR": str(self.runtime),
                    **(redactor.env() if redactor is not None else {})}
        self.executed: list[NotebookRun] = []
        self.files: list[Path] = []
        self.started_at = dt.datetime.now(dt.timezone.utc)
        self.finished: queue.SimpleQueue = queue.SimpleQueue()  # (notebook, failure or None), from the kernels
        self.kernels: list[_Kernel] = []
        self.running: list[NotebookRun] = []
        self.failures: dict[str, str] = {}
        self.unconverted: list[NotebookRun] = []  # executed, not yet turned into HTML and Markdown
        self.kernel_server = _KernelServer(self) if os.environ.get(FORK_KERNELS_ENV, "1") != "0" else None
        self.planned = 0  # notebooks known so far, for the progress line ...
        self.open_plan = False  # ... and whether more may come (timelines not planned yet): "2/4+"

    # -- kernels
    def kernel_env(self) -> dict[str, str]:
        """The kernels' environment: this process's, the run's share folder and redaction key."""
        return {**os.environ, **self.env}

    def kernel_manager(self):
        km = self.kernel_manager_class(kernel_name="python3")
        km.connection_file = str(self.runtime / f"kernel-{secrets.token_hex(6)}.json")
        if self.kernel_server is not None:
            km._kernel_spec = self.kernel_server.spec  # the stub: the kernel is forked, warm, by the server
        return km

    def spare(self, n: int) -> None:
        """Have ``n`` kernels waiting for notebooks not planned yet; new ones start once the
        kernels of the running notebooks are warm (the running notebooks come first)."""
        idle = sum(1 for k in self.kernels if k.notebook is None)
        busy = [k for k in self.kernels if k.notebook is not None and k.notebook in self.running]
        for _ in range(n - idle):
            self.kernels.append(_Kernel(self, after=busy))

    def kept(self, name: str):
        from .notebook import kept

        return kept(name, self.share)

    def start(self, *runs: NotebookRun) -> None:
        """Execute ``runs`` (notebooks that do not depend on each other, nor on any still running),
        each on a waiting kernel or one started now."""
        if self.redactor is not None:
            runs = tuple(NotebookRun(r.notebook, r.name, r.parameters, self.redactor.text(r.title)) for r in runs)
        for r in runs:
            self.executed.append(r)
            self.running.append(r)
            kernel = next((k for k in self.kernels if k.notebook is None), None)
            if kernel is None:
                kernel = _Kernel(self)
                self.kernels.append(kernel)
            kernel.give(r)
        self.planned = max(self.planned, len(self.executed))
        for r in runs:
            self.say(f"{r.name}: running")

    def wait(self, *names: str) -> None:
        """Wait until the notebooks ``names`` (all running ones when none is named) are done,
        converting to HTML and Markdown the ones already done while the others run. When one
        fails, the others are let finish and the run fails with the first failure in the order
        they started."""
        import queue

        while any(r.name in names for r in self.running) if names else self.running:
            try:
                notebook, failure = self.finished.get(block=not self.unconverted)
            except queue.Empty:
                self._convert(self.unconverted.pop(0))
                continue
            self.running.remove(notebook)
            done = len(self.executed) - len(self.running)
            of = f"({done}/{max(self.planned, len(self.executed))}{'+' if self.open_plan else ''} notebooks)"
            if failure:
                self.failures[notebook.name] = failure
                self.say(f"{notebook.name}: failed {of}")
            else:
                self.unconverted.append(notebook)
                self.say(f"{notebook.name}: done in {notebook.seconds:.1f} s {of}")
        if self.failures:
            while self.running:
                notebook, failure = self.finished.get()
                self.running.remove(notebook)
                if failure:
                    self.failures[notebook.name] = failure
            first = next(self.failures[r.name] for r in self.executed if r.name in self.failures)
            raise _fail(self.staging, self.out_dir, first)

    def _convert(self, notebook: NotebookRun) -> None:
        import nbformat

        target = self.staging / f"{notebook.name}.ipynb"
        nb = nbformat.read(str(target), as_version=4)
        self.files.append(target)
        self.files.extend(self.converter.write(nb, self.staging, notebook.name, notebook.title))

    def execute(self, *runs: NotebookRun, total: int | None = None) -> None:
        """Execute ``runs`` (notebooks that do not depend on each other) at the same time and wait
        for them."""
        if total:
            self.planned = max(self.planned, total)
        self.start(*runs)
        self.wait(*(r.name for r in runs))

    def papermill(self, run: NotebookRun, km) -> str | None:
        """Execute one notebook on the started kernel ``km`` into the staging folder; its failure
        as one line, or None."""
        import papermill
        from papermill.exceptions import PapermillExecutionError

        target = self.staging / f"{run.name}.ipynb"
        allowed = declared_parameters(run.notebook)
        params = {k: v for k, v in run.parameters.items() if k in allowed}
        t0 = time.monotonic()
        failure = None
        try:
            # The kernel works in the user's directory (it was started there): relative paths mean
            # what they meant on the command line, and ./pyproject.toml is the user's.
            papermill.execute_notebook(str(run.notebook), str(target), parameters=params,
                                       engine_name=self.engine, km=km, kernel_name="python3",
                                       progress_bar=False, log_output=False, report_mode=not self.show_code)
        except PapermillExecutionError as e:
            failure = f"{run.name} failed at cell {e.exec_count}: {e.ename}: {first_line(e.evalue)[:300]}"
        except Exception as e:  # noqa: BLE001 - the kernel died, could not start, timed out...
            failure = f"{run.name} failed: {type(e).__name__}: {first_line(e)[:300]}"
        run.seconds = time.monotonic() - t0
        run.status = "failed" if failure else "ok"
        if self.redactor is not None and target.exists():
            _redact_notebook(target, self.redactor)
        return failure

    def publish(self, title: str, manifest: dict[str, Any] | None = None, affected=None, race=None) -> ReportResult:
        from . import manifest as run_manifest
        from .index import write_index
        from .kept_evidence import write_evidence

        self.wait()
        while self.unconverted:
            self._convert(self.unconverted.pop(0))
        reading = sorted(self.executed, key=lambda r: r.name)
        self.files.extend(write_evidence(self.staging, affected, self.redactor))
        if race:
            self.files.append(_write_race_results(self.staging, race, self.redactor))
        if manifest is not None:
            self.files.append(run_manifest.write(self.staging, manifest, self.redactor))
        self.files.extend(write_entry_page(self.staging, reading, self.date, title))
        final = _publish(self.staging, self.out_dir, self.date)
        index = write_index(self.out_dir)
        return ReportResult(final, self.date, [final / p.relative_to(self.staging) for p in self.files] + index,
                            reading, manifest or {})

    def close(self) -> None:
        from ..db import embedded

        for kernel in self.kernels:
            if kernel.notebook is None:
                kernel.give(None)
        for kernel in self.kernels:
            kernel.thread.join()
        if self.kernel_server is not None:
            self.kernel_server.stop()
        shutil.rmtree(self.private, ignore_errors=True)
        try:  # a kernel may have started the embedded server (the race lab): stop what the run started
            embedded.default_server().stop_if_orphaned()
        except Exception:  # noqa: BLE001 - cleaning up must not hide the run's own outcome
            pass
        if self.staging.exists():  # never published, never moved to failed/: an interrupted run
            shutil.rmtree(self.staging, ignore_errors=True)


#: The race lab's cells as the run measured them (``remediation`` writes its files from them).
RACE_RESULTS_NAME = "race-lab.json"


def _write_race_results(folder: Path, race, redactor=None) -> Path:
    import json

    path = folder / RACE_RESULTS_NAME
    text = json.dumps({"cells": [c.to_dict() for c in race]}, indent=1, default=str) + "\n"
    path.write_text(redactor.text(text) if redactor is not None else text, encoding="utf-8")
    return path


def latest_race_results(out_dir: str | Path):
    """The race lab's cells of the latest report run in ``out_dir`` that ran it, and that run's
    folder; ``(None, None)`` when there is none."""
    import json

    from ..racelab import CellResult
    from .index import read_runs

    for run in reversed(read_runs(out_dir)):
        path = run.folder / RACE_RESULTS_NAME
        if path.is_file():
            try:
                cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
                return [CellResult(**c) for c in cells], run.folder
            except (OSError, ValueError, KeyError, TypeError):
                continue
    return None, None


def render_report(runs: list[NotebookRun], out_dir: str | Path | None = None, date: str | None = None,
                  show_code: bool = False, title: str = "Incident report",
                  progress: Callable[[str], None] | None = None, redactor=None) -> ReportResult:
    """Execute ``runs`` (side by side: they must not depend on each other) with papermill and
    publish them as one dated report folder, listed in reading order (by name).

    With a ``redactor`` (:class:`incidentkit.evidence.redact.Redactor`) the kernels pseudonymise
    what they draw and show, and every text artifact is pseudonymised again before it is written.
    """
    date = parse_date(date)
    out_dir = _writable_out(Path(out_dir) if out_dir else config.reports_dir())
    run = _Run(out_dir, date, show_code, redactor, progress or progress_printer())
    try:
        run.execute(*runs, total=len(runs))
        return run.publish(title)
    finally:
        run.close()


def base_parameters(database_url_env: str = "", schema_map: str = "",
                    timeouts: config.Timeouts | None = None, demo: str = "audit") -> dict[str, Any]:
    """Parameters every notebook takes: the *name* of the URL's variable (never the URL), the
    schema map as an absolute path, the per-transaction limits in milliseconds, and for the demo
    which form of it (``audit``, or ``production``: without an audit table)."""
    out: dict[str, Any] = {"database_url_env": database_url_env or "",
                           "schema_map": str(Path(schema_map).expanduser().absolute()) if schema_map else ""}
    if not database_url_env and demo != "audit":
        out["demo"] = demo
    if timeouts is not None:
        out["timeouts"] = {"statement_ms": timeouts.statement_ms, "lock_ms": timeouts.lock_ms,
                           "idle_in_transaction_ms": timeouts.idle_in_transaction_ms}
    return out


def diagnosis_run(params: dict[str, Any], sample_limit: int = config.DEFAULT_SAMPLE_LIMIT) -> NotebookRun:
    return NotebookRun(notebook_path("01-diagnosis.ipynb"), "01-diagnosis",
                       {**params, "sample_limit": sample_limit}, "Diagnosis: the report's statistics, from the database")


def _resolved_logs(logs: list[str] | None) -> list[str]:
    """Log paths made absolute against the user's directory (globs kept as written, anchored there)."""
    return [str(Path(str(p)).expanduser().absolute()) for p in (logs or [])]


def timeline_runs(params: dict[str, Any], logs: list[str], window: float, users: list[str],
                  max_users: int = config.DEFAULT_MAX_USERS) -> list[NotebookRun]:
    """One timeline notebook per affected user (at most ``max_users``), in the order they failed."""
    return [NotebookRun(notebook_path("03-user-timeline.ipynb"), f"03-user-timeline-{i:02d}",
                        {**params, "logs": logs, "window_seconds": window, "user_id": user},
                        f"Timeline of {user}")
            for i, user in enumerate(users[:max_users], 1)]


def affected_users(found) -> list[str]:
    """The affected users of an ``Affected`` result, in the order of their first failure."""
    users: list[str] = []
    for failure in found.failures if found is not None else []:
        if failure.user_id and failure.user_id not in users:
            users.append(failure.user_id)
    return users


def render_for(database_url_env: str = "", schema_map: str = "", out_dir=None, date: str | None = None,
               show_code: bool = False, logs: list[str] | None = None, max_users: int = config.DEFAULT_MAX_USERS,
               window: float = config.DEFAULT_WINDOW_SECONDS, race_lab: bool = True, redact: bool = False,
               redact_workspaces: bool = False, timeouts: config.Timeouts | None = None,
               progress: Callable[[str], None] | None = None, demo: str = "audit",
               as_of_command: str | None = None, as_of_since: float = config.DEFAULT_AS_OF_SINCE_SECONDS,
               as_of_precision: float = config.DEFAULT_AS_OF_PRECISION_SECONDS, constraint: str = "",
               error: str = "") -> ReportResult:
    """The full report for a database (the demo when ``database_url_env`` is empty), each
    analysis computed once.

    ``constraint`` (a foreign key's name) or ``error`` (its violation's error text, as pasted)
    makes it the report of that foreign key (:func:`_render_constraint`); without either, the
    report of the mapped users → workspaces relationship, as always.

    The detail notebooks run first, in the order the data flows: the diagnosis; the affected
    users (with logs, or on the demo, which has its own log); one timeline per affected user,
    planned from the affected users the previous notebook kept; the race lab. The incident
    document (``00-postmortem``) runs last and is assembled from the results they kept, so its
    every figure is the one the detail notebook shows. ``run.json`` and ``evidence/`` are
    written from the same results.

    ``as_of_command`` (point-in-time probes) reaches the kernels through the environment
    (``notebook.AS_OF_ENV``), never as a parameter: a command may carry a token."""
    from ..evidence.redact import Redactor
    from .notebook import AS_OF_ENV

    date = parse_date(date)
    out = _writable_out(Path(out_dir) if out_dir else config.reports_dir())
    params = base_parameters(database_url_env, schema_map, timeouts, demo)
    if constraint or error:
        constraint = resolve_constraint(database_url_env, schema_map, timeouts, demo, constraint, error)
    evidence_params: dict[str, Any] = {}
    if as_of_command:
        from ..evidence.asof import AsOfCommand

        AsOfCommand(as_of_command)  # refused here, before any notebook runs, when it is malformed
        evidence_params = {"as_of_command_env": AS_OF_ENV, "as_of_since": as_of_since,
                           "as_of_precision": as_of_precision}
    given_logs = [str(p) for p in (logs or [])]
    logs = _resolved_logs(logs)
    redactor = Redactor.new(workspaces=redact_workspaces) if (redact or redact_workspaces) else None
    run = _Run(out, date, show_code, redactor, progress or progress_printer())
    if as_of_command:
        run.env[AS_OF_ENV] = as_of_command
    try:
        if constraint:
            return _render_constraint(run, constraint, params, evidence_params, given_logs, logs, window,
                                      max_users, race_lab, show_code, date)
        # The analyses that need nothing but the database (and the logs) start at once, side by
        # side; beside them, kernels for a timeline and for the incident document start and wait.
        first = [diagnosis_run(params)]
        affected_nb = bool(logs or not database_url_env)  # the demo database has its own log
        if affected_nb:
            first.append(NotebookRun(notebook_path("02-affected-users.ipynb"), "02-affected-users",
                                     {**params, "logs": logs, "window_seconds": window, **evidence_params},
                                     "Affected users: every failed login and its verdict"))
        if race_lab:
            first.append(NotebookRun(notebook_path("04-race-lab.ipynb"), "04-race-lab", {},
                                     "Race lab: the proposed fixes run against the race"))
        # One timeline per affected user, planned from what 02 kept; the incident document last.
        found = _run_notebooks(
            run, first, "02-affected-users" if affected_nb else None, max_users > 0, "affected",
            lambda found: timeline_runs({**params, **evidence_params}, logs, window, affected_users(found),
                                        max_users),
            NotebookRun(notebook_path("00-postmortem.ipynb"), "00-postmortem",
                        {**params, "logs": logs, "window_seconds": window, "race_lab": race_lab},
                        "Incident document: the postmortem, from this run's data"))
        diagnosis, race = run.kept("diagnosis"), run.kept("race_lab") if race_lab else None
        from . import manifest

        facts = manifest.build(
            parameters={**params, **evidence_params, "logs": given_logs, "window_seconds": window, "max_users": max_users,
                        "race_lab": race_lab, "redact": bool(redactor), "show_code": show_code},
            notebooks=sorted(run.executed, key=lambda r: r.name), diagnosis=diagnosis, affected=found, race=race,
            started_at=run.started_at, finished_at=manifest.now(), date=date)
        return run.publish("Incident report", facts, affected=found, race=race)
    finally:
        run.close()


def _run_notebooks(run: "_Run", first: list[NotebookRun], failures_nb: str | None, timelines_wanted: bool,
                   failures_kept: str, plan_timelines: Callable[[Any], list[NotebookRun]], postmortem: NotebookRun,
                   any_constraint: bool = False) -> Any:
    """A report's notebooks in their order, each started as soon as what it reads is kept: ``first``
    side by side at once (beside them, kernels for a timeline and for the incident document start
    and wait); once the notebook ``failures_nb`` (None: none runs) is done, the timelines
    ``plan_timelines`` plans from what it kept as ``failures_kept``; then ``postmortem``, from
    everything kept. Returns what ``failures_kept`` holds."""
    run.planned, run.open_plan = len(first) + 1, failures_nb is not None and timelines_wanted
    run.start(*_variants(run, first, any_constraint))
    run.spare(2 if run.open_plan else 1)  # a timeline's kernel, the incident document's
    if failures_nb is not None:
        run.wait(failures_nb)
    found = run.kept(failures_kept)
    timelines = plan_timelines(found)
    run.planned, run.open_plan = run.planned + len(timelines), False
    run.start(*_variants(run, timelines, any_constraint))
    run.spare(1)  # the incident document's
    run.wait()
    run.execute(*_variants(run, [postmortem], any_constraint))
    return found


def render_demo(out_dir=None, date: str | None = None, demo: str = "audit", constraint: str = "") -> ReportResult:
    """``incidentkit demo``: start the embedded server, load the demo if needed, render everything
    (``demo="production"``: the same incident as production is, without an audit table;
    ``constraint``: the report of that foreign key of the demo, e.g. its second incident's)."""
    from ..db.demo import ensure_demo, ensure_production_demo

    ensure_production_demo() if demo == "production" else ensure_demo()
    return render_for("", "", out_dir, date, demo=demo, constraint=constraint)


# -- the report of any foreign key ------------------------------------------------------------
#: The notebooks hold the cells of both kinds of report, tagged: those of the mapped users →
#: workspaces relationship, and those of any foreign key (``constraint`` set). A run executes a
#: copy of each notebook holding the cells of its kind only (and the untagged, shared ones).
SEED_TAG = "mapped-relationship"
CONSTRAINT_TAG = "any-constraint"


def notebook_variant(source: Path, folder: Path, any_constraint: bool) -> Path:
    """``folder/<name>``: the notebook ``source`` without the cells of the other kind of report."""
    import nbformat

    target = folder / source.name
    if not target.exists():
        drop = SEED_TAG if any_constraint else CONSTRAINT_TAG
        nb = nbformat.read(str(source), as_version=4)
        nb.cells = [c for c in nb.cells if drop not in (c.get("metadata", {}).get("tags") or [])]
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(target))
    return target


def _variants(run: "_Run", runs: list[NotebookRun], any_constraint: bool = False) -> list[NotebookRun]:
    folder = run.private / ("notebooks-constraint" if any_constraint else "notebooks")
    return [NotebookRun(notebook_variant(r.notebook, folder, any_constraint), r.name, r.parameters, r.title)
            for r in runs]


def resolve_constraint(database_url_env: str, schema_map: str, timeouts: config.Timeouts | None, demo: str,
                       constraint: str = "", error: str = "") -> str:
    """The foreign key a report is for, checked against the database before any notebook runs: the
    name given, or the one ``error`` names (an error text that is no foreign-key violation, or an
    unknown name: :class:`ConfigError`, one line)."""
    from ..analysis.constraints import discover, parse_error
    from ..db.connection import Database
    from ..db.schema import SchemaMap

    table = schema = None
    if error:
        parsed = parse_error(error)
        if constraint and constraint != parsed.constraint:
            raise ConfigError(f"the constraint {constraint!r} is not the one the error names ({parsed.constraint!r})")
        constraint, table, schema = parsed.constraint, parsed.table, parsed.schema
    kwargs: dict[str, Any] = {"schema": SchemaMap.load(schema_map or None)}
    if timeouts is not None:
        kwargs["timeouts"] = timeouts
    db = (Database.from_env(database_url_env, **kwargs) if database_url_env
          else Database.demo(production=demo == "production", **kwargs))
    with db.read() as r:
        return discover(r, constraint, table=table, schema=schema).name


def failed_keys(found) -> list[list[str]]:
    """The keys of an ``AnyAffected`` result's failures (values in the key's column order, as the
    error's Detail gives them), each once, in the order they first failed."""
    keys: list[list[str]] = []
    for j in found.failures if found is not None else []:
        key = [str(v) for v in j.failure.key.values()]
        if key and key not in keys:
            keys.append(key)
    return keys


def key_timeline_runs(params: dict[str, Any], constraint: str, logs: list[str], window: float,
                      keys: list[list[str]], max_keys: int = config.DEFAULT_MAX_USERS) -> list[NotebookRun]:
    """One timeline notebook per failed key of ``constraint`` (at most ``max_keys``)."""
    return [NotebookRun(notebook_path("03-user-timeline.ipynb"), f"03-key-timeline-{i:02d}",
                        {**params, "constraint": constraint, "logs": logs, "window_seconds": window, "key": key},
                        f"Timeline of key ({', '.join(key)})")
            for i, key in enumerate(keys[:max_keys], 1)]


class _EvidenceView:
    """The failures of an ``AnyAffected`` as ``kept_evidence.write_evidence`` reads them: each
    failure's record copied from its log; no deletion list (that file is the seed's)."""

    def __init__(self, found):
        from types import SimpleNamespace

        self.failures = [SimpleNamespace(source=j.failure.source, line=j.failure.line, at=j.failure.at,
                                         verdict=j.verdict, deleted_at=None) for j in found.failures]
        self.deletion_sources = list(dict.fromkeys(x for g in found.groups for x in g.sources))


def _render_constraint(run: "_Run", constraint: str, params: dict[str, Any], evidence_params: dict[str, Any],
                       given_logs: list[str], logs: list[str], window: float, max_keys: int, race_lab: bool,
                       show_code: bool, date: str) -> ReportResult:
    """The report of one foreign key, staged as the seed's: the diagnosis, its failures in the logs
    and the race lab side by side; one key timeline per failed key; the shorter incident document
    last, from what they kept."""
    from ..racelab import generic_summary

    cparams = {**params, "constraint": constraint}
    title = f"Foreign key {constraint}"
    first = [NotebookRun(notebook_path("01-diagnosis.ipynb"), "01-diagnosis", {**cparams},
                         f"Diagnosis: {constraint}, from the catalog and the data")]
    failures_nb = bool(logs or not params.get("database_url_env"))  # the demo database has its own logs
    if failures_nb:
        first.append(NotebookRun(notebook_path("02-affected-users.ipynb"), "02-failures",
                                 {**cparams, "logs": logs, "window_seconds": window, **evidence_params},
                                 f"Failures on {constraint} and their verdicts"))
    if race_lab:
        first.append(NotebookRun(notebook_path("04-race-lab.ipynb"), "04-race-lab", {**cparams},
                                 f"Race lab: inserting against deleting, on {constraint}"))
    found = _run_notebooks(
        run, first, "02-failures" if failures_nb else None, max_keys > 0, "constraint_affected",
        lambda found: key_timeline_runs({**params, **evidence_params}, constraint, logs, window,
                                        failed_keys(found), max_keys),
        NotebookRun(notebook_path("00-postmortem.ipynb"), "00-postmortem",
                    {**cparams, "logs": logs, "window_seconds": window, "race_lab": race_lab},
                    f"Incident document: {constraint}, from this run's data"),
        any_constraint=True)
    diagnosis, race = run.kept("constraint_diagnosis"), run.kept("constraint_race_lab") if race_lab else None
    from . import manifest

    facts = manifest.build(
        parameters={**params, **evidence_params, "constraint": constraint, "logs": given_logs,
                    "window_seconds": window, "max_users": max_keys, "race_lab": race_lab,
                    "redact": run.redactor is not None, "show_code": show_code},
        notebooks=sorted(run.executed, key=lambda r: r.name), started_at=run.started_at,
        finished_at=manifest.now(), date=date)
    facts["constraint"] = constraint
    if diagnosis is not None:
        facts["database"] = diagnosis.database
        facts["snapshot_at"] = diagnosis.to_dict()["snapshot_at"]
        facts["definition"] = diagnosis.constraint.to_dict(paths=False)
        facts["figures"]["constraint"] = diagnosis.figures
    if found is not None:
        facts["logs"] = [{"path": p} for p in found.files]
        facts["deletion_sources"] = list(dict.fromkeys(x for g in found.groups for x in g.sources))
        facts["figures"]["failures"] = {"failures": len(found.failures), "by_verdict": found.by_verdict(),
                                        "keys": failed_keys(found)}
    if race:
        facts["figures"]["race_lab"] = generic_summary(race)
    return run.publish(title, facts, affected=_EvidenceView(found) if found is not None else None)
