"""Mean and spread over demo runs with different seeds (a markdown table):

    python -m sdft_jax.demo.aggregate runs/demo runs/demo_seed1 runs/demo_seed2
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

ROWS = [  # (label, function of one method's record -> value)
    ("new-task accuracy after its own stage", lambda m: np.mean([m["matrix"][i][m["columns"].index(s["task"])]
                                                                 for i, s in enumerate(m["summary"]["stages"])])),
    ("final new-task accuracy (all tasks)", lambda m: m["summary"]["final_new_tasks_accuracy"]),
    ("final prior-skill accuracy", lambda m: m["summary"]["final_prior_accuracy"]),
    ("prior forgetting (base - final)", lambda m: m["summary"]["prior_forgetting"]),
    ("new-task forgetting (own stage - final)", lambda m: m["summary"]["new_task_forgetting"]),
    ("teacher accuracy after stage 1", lambda m: np.mean(list(m["teacher_after_stage"][0].values()))),
]


def table(workdirs: list[str]) -> str:
    runs = [json.load(open(os.path.join(w, "results.json"))) for w in workdirs]
    seeds = ", ".join(str(r["seed"]) for r in runs)
    lines = [f"Mean ± std over {len(runs)} seeds ({seeds}); per seed in brackets.", "",
             "| metric | SDFT | SFT |", "|---|---|---|"]
    for label, fn in ROWS:
        cells = []
        for method in ("sdft", "sft"):
            vals = [float(fn(r["methods"][method])) for r in runs]
            cells.append(f"{np.mean(vals):.3f} ± {np.std(vals):.3f} [{', '.join(f'{v:.2f}' for v in vals)}]")
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    teacher = [np.mean(list(r["teacher_ceiling"]["teacher"].values())) for r in runs]
    student = [np.mean(list(r["teacher_ceiling"]["student"].values())) for r in runs]
    prior = [np.mean(list(r["teacher_ceiling"]["prior"].values())) for r in runs]
    lines += ["", f"Base model: student {np.mean(student):.3f}, teacher {np.mean(teacher):.3f} on the new tasks; "
              f"prior skills {np.mean(prior):.3f}."]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    print(table(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
