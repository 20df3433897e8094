"""Steering a notebook without editing code: a control to pick the user and the window.

In JupyterLab, :func:`timeline_control` shows a drop-down of the users whose logins failed in
the logs, the workspace a user's failure names, and the window; changing one redraws the timeline
and the verdict in place. Under papermill (a report run), nbval, or wherever ``ipywidgets`` is
missing, it shows nothing and returns None: the notebook's cells below render the timeline of
its ``user_id`` parameter, so a rendered report stays static and reproducible.

``INCIDENTKIT_STATIC=1`` in the environment forces the static form (the tests set it for nbval).
"""

from __future__ import annotations

import os
from typing import Any, Callable

STATIC_ENV = "INCIDENTKIT_STATIC"
#: The windows the control offers, in seconds.
WINDOWS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)


def interactive() -> bool:
    """Whether a control can be shown: a kernel with a front end, not a report run, not static."""
    from .notebook import in_report_run

    if os.environ.get(STATIC_ENV) == "1" or in_report_run():
        return False
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def failed_users(db, logs=None, user_pattern: str | None = None) -> list[tuple[str, str | None]]:
    """(user id, workspace id) of every failed login in the logs, in the order they failed."""
    from ..evidence.affected import default_logs, scan_for
    from ..evidence.logs import merge_failures

    logs = logs or default_logs(db)
    if not logs:
        return []
    out: list[tuple[str, str | None]] = []
    for f in merge_failures(scan_for(db, logs, user_pattern).failures):
        if f.kind == "insert" and f.user_id and f.user_id not in [u for u, _ in out]:
            out.append((f.user_id, f.workspace_id))
    return out


def timeline_control(db, *, user_id: str, logs=None, window_seconds: float = 5.0, as_of: Any = None,
                     show: Callable[[Any], None] | None = None):
    """In JupyterLab: a user drop-down and a window selector, redrawing the timeline (plot and
    verdict) below them on every change; returns the widget. Elsewhere: None (static)."""
    if not interactive():
        return None
    import ipywidgets as w
    from IPython.display import display

    from ..evidence.timeline import user_timeline
    from .notebook import markdown

    users = failed_users(db, logs)
    options = [(f"{u}  (workspace {ws or '-'})", u) for u, ws in users]
    if user_id not in [u for u, _ in users]:
        options.insert(0, (user_id, user_id))
    who = w.Dropdown(options=options, value=user_id, description="user", layout=w.Layout(width="70%"))
    windows = sorted(set(WINDOWS) | {float(window_seconds)})
    window = w.Dropdown(options=[(f"±{x:g} s", x) for x in windows], value=float(window_seconds),
                        description="window")
    out = w.Output()
    status = w.HTML()

    def draw(*_):
        import matplotlib.pyplot as plt

        status.value = "<i>reading…</i>"
        with out:
            out.clear_output(wait=True)
            tl = user_timeline(db, who.value, logs=logs or None, window=window.value, as_of=as_of)
            (show or _show)(tl)
            plt.show()
            display(markdown(tl.summary_markdown()))
        status.value = ""

    who.observe(draw, names="value")
    window.observe(draw, names="value")
    box = w.VBox([w.HBox([who, window, status]), out])
    display(box)
    draw()
    return box


def _show(timeline) -> None:
    timeline.plot()
