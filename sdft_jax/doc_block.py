"""Docs whose numbers come from runs: a script rewrites only the block between two markers, so the
hand-written text (setup, hypothesis, discussion) stays and the figures cannot drift from the JSON."""
from __future__ import annotations

import os

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def update(doc: str, text: str) -> None:
    content = open(doc).read()
    if BEGIN not in content or END not in content:
        raise ValueError(f"{doc}: no {BEGIN} ... {END} block to replace")
    head, rest = content.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    with open(doc, "w") as f:
        f.write(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def link(figure: str, doc: str) -> str:
    """How `doc` refers to `figure` (relative to the doc's folder; as given when there is no doc)."""
    return os.path.relpath(figure, os.path.dirname(os.path.abspath(doc))) if figure and doc else figure


def emit(text: str, doc: str) -> None:
    """Into `doc`'s results block, or to stdout when no doc is given."""
    if doc:
        update(doc, text)
    else:
        print(text)
