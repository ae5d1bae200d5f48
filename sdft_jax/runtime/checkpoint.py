"""The only module that talks to orbax: save / restore the train state plus JSON metadata
(data-iterator state, resolved config). Restores straight into the target shardings. The state is a
core.train_state.TrainState, handled through its fields (this layer does not import the algorithm)."""
from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp
from etils import epath



def _as_dict(state) -> dict:
    """What a checkpoint holds: everything but a LoRA run's frozen base (re-read from model.path)."""
    d = {"step": state.step, "params": state.params, "opt_state": state.opt_state, "rng": state.rng}
    if state.teacher_params is not None:
        d["teacher_params"] = state.teacher_params
    return d


def _from_dict(d: dict, template):
    return template.replace(step=d["step"], params=d["params"], teacher_params=d.get("teacher_params"),
                            opt_state=d["opt_state"], rng=d["rng"])


class CheckpointError(RuntimeError):
    pass


def step_folders(directory: str) -> list[int]:
    """The steps with a folder under `directory` (readable or not), without opening a manager."""
    d = epath.Path(directory)
    return [int(p.name) for p in d.iterdir() if p.name.isdigit()] if d.exists() else []


class Checkpointer:
    def __init__(self, directory: str, keep: int = 3, say=print):
        self.directory = directory if "://" in directory else os.path.abspath(directory)
        self._keep, self._say = keep, say
        self._mngr = self._manager()

    def _manager(self):
        return ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=self._keep, create=True,
                                                 enable_async_checkpointing=True))

    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._mngr.all_steps())

    def save(self, step: int, state, meta: dict) -> None:
        self._mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(_as_dict(state)),
                                                      meta=ocp.args.JsonSave(meta)), force=True)

    def restore_newest_readable(self, state_template, shardings):
        """-> (state, meta) of the newest checkpoint that reads cleanly, or None when there is none.
        Newer unreadable ones (truncated arrays, missing metadata, empty folders: a crash mid-write)
        are then moved to DIRECTORY.corrupt/STEP, kept for inspection, so the resumed run saves anew.
        When none reads (a changed model, say), nothing is moved and the error names each failure."""
        failures = []
        for step in sorted(self._step_folders(), reverse=True):
            try:
                restored = self.restore(state_template, shardings, step)
            except Exception as e:  # noqa: BLE001 - any failure to read means: try the previous one
                text = str(e).strip()
                failures.append((step, f"{type(e).__name__}: {text.splitlines()[0][:200] if text else ''}"))
                continue
            for bad, reason in failures:
                self._say(f"checkpoint step {bad} does not read cleanly ({reason}); resuming from step {step}; "
                          f"step {bad} moved to {self._set_aside(bad)}")
            return restored
        if failures:
            raise CheckpointError(f"no checkpoint in {self.directory} reads cleanly: "
                                  f"{'; '.join(f'step {s} ({r})' for s, r in failures)}. Start afresh with "
                                  f"another --workdir, or move the folder away")
        return None

    def _step_folders(self) -> list[int]:
        return step_folders(self.directory)

    def _set_aside(self, step: int) -> str:
        target = epath.Path(self.directory + ".corrupt") / str(step)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target.rmtree()
        (epath.Path(self.directory) / str(step)).rename(target)
        self._mngr.close()
        self._mngr = self._manager()  # re-read the step list
        return str(target)

    def restore(self, state_template, shardings, step: int | None = None):
        """-> (state, meta) from `step` (default latest), placed in `shardings`."""
        step = self.latest_step() if step is None else step
        abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                _as_dict(state_template), _as_dict(shardings))
        out = self._mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                               meta=ocp.args.JsonRestore()))
        return _from_dict(out.state, state_template), out.meta

    def wait(self) -> None:
        self._mngr.wait_until_finished()

    def close(self) -> None:
        self._mngr.wait_until_finished()
        self._mngr.close()
