"""What every page the kit writes carries, written once."""

from __future__ import annotations

import html

#: The Content-Security-Policy of every page the kit writes: no script runs (inline or not),
#: nothing is fetched; figures are inline images, styles inline. Values from logs are escaped
#: where they are shown; this is the second wall.
CSP = ("default-src 'none'; script-src 'none'; object-src 'none'; img-src data: 'self'; "
       "style-src 'unsafe-inline'; font-src data:; base-uri 'none'; form-action 'none'")
CSP_META = f'<meta http-equiv="Content-Security-Policy" content="{html.escape(CSP)}">'


def has_csp(page: str) -> bool:
    """True when ``page`` carries the kit's policy in its head (attribute order does not matter)."""
    import re

    head = page.split("</head>", 1)[0]
    for tag in re.findall(r"<meta\b[^>]*>", head, flags=re.I):
        if 'http-equiv="Content-Security-Policy"' in tag and f'content="{CSP}"' in html.unescape(tag):
            return True
    return False
