"""A workdir's recorded config against this run's: which keys changed, and whether a change alters
what the run means (a resume must not mix two runs) or only how it is run (steps, logging, cadence).

The workdir keeps `config.json` (the run that started it) and `config.resume-N.json` for each resume
that was accepted with other settings; the newest of them is what a resume is compared with."""
from __future__ import annotations

import json
import re

import ml_collections
from etils import epath

# Changes a resume may make without asking: they do not change what the steps compute.
HARMLESS = ("steps", "log.", "eval.", "evals.", "checkpoint.", "mesh.", "data.data_dir", "model.remat",
            "model.attention")


class ConfigChanged(ValueError):
    """A resume or a sweep point whose settings differ from those its workdir recorded."""


def plain(config) -> dict:
    """A ConfigDict (or a dict) as the JSON types config.json holds (tuples as lists, floats exact)."""
    if isinstance(config, ml_collections.ConfigDict):
        return json.loads(config.to_json_best_effort())
    return json.loads(json.dumps(config, default=str))


def config_text(config) -> str:
    return config.to_json_best_effort(indent=2, sort_keys=True)


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def changes(old: dict, new: dict) -> dict[str, tuple]:
    """{key: (old, new)} over the keys both hold (a key added to or removed from the configs since
    the workdir was written is not a change of this run's settings; nor is resume.*, how to resume)."""
    a, b = flatten(plain(old)), flatten(plain(new))
    return {k: (a[k], b[k]) for k in sorted(a.keys() & b.keys()) if a[k] != b[k] and not k.startswith("resume.")}


def is_harmless(key: str) -> bool:
    return any(key == h or (h.endswith(".") and key.startswith(h)) for h in HARMLESS)


def describe(diff: dict[str, tuple]) -> str:
    return ", ".join(f"{k}: {_short(o)} -> {_short(n)}" for k, (o, n) in diff.items())


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def recorded(workdir: str) -> tuple[epath.Path, dict] | None:
    """(path, config) of the newest config the workdir recorded, or None."""
    folder = epath.Path(workdir)
    resumes = sorted((_resume_index(p), p) for p in folder.glob("config.resume-*.json") if _resume_index(p))
    path = resumes[-1][1] if resumes else folder / "config.json"
    if not path.exists():
        return None
    try:
        return path, json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigChanged(f"{path}:{e.lineno}: not valid JSON ({e.msg}); move it away to start afresh") from None


def _resume_index(path: epath.Path) -> int:
    m = re.fullmatch(r"config\.resume-(\d+)\.json", path.name)
    return int(m.group(1)) if m else 0


def check_resume(config, workdir: str, checkpoint_step: int | None, say, write: bool = True):
    """Before anything loads. Without a checkpoint the run starts afresh and writes config.json.
    With one, changes that alter the run's meaning stop the run (unless resume.allow_changes names
    them) and harmless ones are noted. Returns what to call once the checkpoint restored: it records
    accepted changes in config.resume-N.json (config.json stays the run's first config)."""
    folder = epath.Path(workdir)
    if checkpoint_step is not None and checkpoint_step > config.steps:
        raise ConfigChanged(f"steps: {config.steps} is below the step of the checkpoint in {workdir}/checkpoints "
                            f"({checkpoint_step}); this run would export that step-{checkpoint_step} model. Pass "
                            f"--config.steps={checkpoint_step} or more, or use another --workdir")
    found = recorded(workdir) if checkpoint_step is not None else None
    if found is None:  # a fresh run (or a workdir from before config.json was written)
        if write:
            (folder / "config.json").write_text(config_text(config))
        return lambda: None
    path, old = found
    diff = changes(old, config)
    if not diff:
        return lambda: None
    allowed = {k.strip() for k in str((config.get("resume") or {}).get("allow_changes", "")).split(",") if k.strip()}
    refused = {k: v for k, v in diff.items() if not is_harmless(k) and k not in allowed}
    if refused:
        raise ConfigChanged(
            f"{path}: this workdir's run (checkpoint step {checkpoint_step}) has other settings: {describe(refused)}; "
            f"resuming would mix two runs. Use another --workdir, or pass --config.resume.allow_changes="
            f"{','.join(refused)} to continue it with them")

    def record():
        if not write:
            return
        index = max([_resume_index(p) for p in folder.glob("config.resume-*.json")] + [0]) + 1
        target = folder / f"config.resume-{index}.json"
        target.write_text(config_text(config))
        say(f"note: resumed with changed settings ({describe(diff)}); {folder / 'config.json'} is kept, this "
            f"run's config is {target}")
    return record
