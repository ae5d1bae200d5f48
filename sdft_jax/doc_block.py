"""Docs whose numbers come from runs: a script rewrites only the block between two markers, so the
hand-written text (setup, hypothesis, discussion) stays and the figures cannot drift from the JSON."""
from __future__ import annotations

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def update(doc: str, text: str) -> None:
    content = open(doc).read()
    if BEGIN not in content or END not in content:
        raise ValueError(f"{doc}: no {BEGIN} ... {END} block to replace")
    head, rest = content.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    with open(doc, "w") as f:
        f.write(f"{head}{BEGIN}\n{text}\n{END}{tail}")
