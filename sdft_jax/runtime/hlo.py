"""Reading a compiled program: which collectives run inside its loops (per iteration)."""
from __future__ import annotations

import collections
import re

_HEADER = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s*\(.*\{\s*$")
_CALLS = re.compile(r"(?:calls|body|condition|to_apply|true_computation|false_computation)=%?([\w.\-]+)")
_BRANCHES = re.compile(r"branch_computations=\{([^}]*)\}")
_WHILE = re.compile(r"\swhile\(.*body=%?([\w.\-]+)")
COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")


def _computations(hlo_text: str) -> dict[str, list[str]]:
    comps, name = {}, None
    for line in hlo_text.splitlines():
        m = _HEADER.match(line)
        if m and not line.startswith(" "):
            name = m.group(1)
            comps[name] = []
        elif line.startswith("}"):
            name = None
        elif name is not None:
            comps[name].append(line)
    return comps


def _callees(lines: list[str]) -> set[str]:
    out = set()
    for line in lines:
        out.update(_CALLS.findall(line))
        for group in _BRANCHES.findall(line):
            out.update(x.strip().lstrip("%") for x in group.split(","))
    return out


def collectives_in_loops(hlo_text: str) -> collections.Counter:
    """Count of each collective op in the bodies of while loops (and everything they call): the
    collectives that run once per iteration, e.g. per decoded token, rather than once per program."""
    comps = _computations(hlo_text)
    bodies = {m for lines in comps.values() for line in lines for m in _WHILE.findall(line)}
    seen, todo = set(), list(bodies)
    while todo:
        name = todo.pop()
        if name in seen or name not in comps:
            continue
        seen.add(name)
        todo.extend(_callees(comps[name]))
    counts = collections.Counter()
    for name in seen:
        for line in comps[name]:
            for op in COLLECTIVES:
                if re.search(rf"\s{op}(-start)?\(", line):
                    counts[op] += 1
    return counts
