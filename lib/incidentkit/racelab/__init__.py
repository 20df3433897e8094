"""The race lab: the incident's race replayed on two real connections, for every strategy."""

from .core import (  # noqa: F401
    REMEDIATION_FILES,
    CellResult,
    Strategy,
    conclusions,
    fix_markdown,
    matrix_frame,
    recommended,
    render_remediation,
    run_race_lab,
    styled_matrix,
    summary,
    target_description,
    waits_frame,
    write_remediation,
)
