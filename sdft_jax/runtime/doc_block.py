"""Docs whose numbers come from runs: a script rewrites only the block between two markers, so the
hand-written text (setup, hypothesis, discussion) stays and the figures cannot drift from the JSON."""
from __future__ import annotations

import os

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def markers(name: str = "") -> tuple[str, str]:
    """A doc may hold several blocks: the unnamed one, and `<!-- results:NAME:begin -->` ones."""
    return (BEGIN, END) if not name else (f"<!-- results:{name}:begin -->", f"<!-- results:{name}:end -->")


def update(doc: str, text: str, name: str = "") -> None:
    begin, end = markers(name)
    content = open(doc).read()
    if begin not in content or end not in content:
        raise ValueError(f"{doc}: no {begin} ... {end} block to replace")
    head, rest = content.split(begin, 1)
    tail = rest.split(end, 1)[1]
    with open(doc, "w") as f:
        f.write(f"{head}{begin}\n{text}\n{end}{tail}")


def link(figure: str, doc: str) -> str:
    """How `doc` refers to `figure` (relative to the doc's folder; as given when there is no doc)."""
    return os.path.relpath(figure, os.path.dirname(os.path.abspath(doc))) if figure and doc else figure


def emit(text: str, doc: str, name: str = "") -> None:
    """Into `doc`'s results block (the one called `name`), or to stdout when no doc is given."""
    if doc:
        update(doc, text, name)
    else:
        print(text)
