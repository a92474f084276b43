"""docs/api-reference.md is generated from the public API's docstrings (issue 15:
"a reference generated from the docstrings"): it must match the code."""

from __future__ import annotations

import subprocess
import sys

from support.helpers import REPO


def test_the_reference_page_is_what_the_docstrings_say() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "api_reference.py"), "--check"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_every_public_name_has_a_docstring() -> None:
    text = (REPO / "docs" / "api-reference.md").read_text()
    # a heading directly followed by the next heading is a public name nobody documented
    lines = [line for line in text.splitlines() if line.strip()]
    bare = [a for a, b in zip(lines, lines[1:], strict=False)
            if a.startswith("###") and b.startswith(("###", "- property")) and "class `" not in a]
    assert bare == [], bare
