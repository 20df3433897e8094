"""The race lab: the report's fixes run against the incident's race, on a real PostgreSQL.

The diagnosis blames a race between a user's first login (``ensureUserWorkspace``) and an
admin deleting the workspace the user was invited to, and proposes fixes nobody ran against
that race. The lab runs them: every strategy under every interleaving, each cell observed on
two real connections, nothing predicted. It runs only on a scratch database of its own.

The package, in the order a lab run goes through it:

* :mod:`.sql` -- every SQL statement the lab sends, named, and the SQL files it reads;
* :mod:`.strategies` -- :class:`Strategy` and :data:`STRATEGIES`, each with its app code
  change as a ``.ts`` file next to it;
* :mod:`.cells` -- the interleavings, the outcome values and :class:`CellResult`;
* :mod:`.safety` -- the scratch target: connecting, refusing what is not the lab's, preparing;
* :mod:`.driver` -- :func:`run_race_lab`: the two sides stepped through each interleaving;
* :mod:`.analysis` -- verdicts, conclusions, the recommended strategy, the matrix tables;
* :mod:`.remediation` -- the remediation SQL files and the code fix, for the report.

Typical use::

    results = run_race_lab()            # a database of its own on the embedded server
    print("\\n".join(conclusions(results)))
    write_remediation("out/remediation", results=results)
"""

from .analysis import (
    Verdict,
    conclusions,
    matrix_frame,
    recommended,
    styled_matrix,
    summary,
    verdicts,
    waits_frame,
)
from .cells import INTERLEAVING_DESCRIPTIONS, INTERLEAVINGS, OUTCOMES, CellResult
from .driver import run_race_lab
from .generic import (
    GENERIC_STRATEGIES,
    GenericStrategy,
    RaceDefinitions,
    generic_conclusions,
    generic_summary,
    generic_text,
    run_generic_race_lab,
)
from .remediation import fix_markdown, render_remediation, write_remediation
from .safety import target_description
from .sql import REMEDIATION_FILES
from .strategies import STRATEGIES, Strategy

__all__ = [
    "INTERLEAVINGS", "INTERLEAVING_DESCRIPTIONS", "OUTCOMES", "STRATEGIES", "REMEDIATION_FILES",
    "CellResult", "Strategy", "Verdict",
    "run_race_lab", "matrix_frame", "styled_matrix", "waits_frame", "conclusions", "recommended",
    "verdicts", "render_remediation", "write_remediation", "fix_markdown", "summary", "target_description",
    "GENERIC_STRATEGIES", "GenericStrategy", "RaceDefinitions", "run_generic_race_lab", "generic_summary",
    "generic_conclusions", "generic_text",
]
