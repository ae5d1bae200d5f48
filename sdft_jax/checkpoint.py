"""The only module that talks to orbax: save / restore the train state plus JSON metadata
(data-iterator state, resolved config). Restores straight into the target shardings."""
from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp

from sdft_jax.train_state import TrainState


def _as_dict(state: TrainState) -> dict:
    d = {"step": state.step, "params": state.params, "opt_state": state.opt_state, "rng": state.rng}
    if state.teacher_params is not None:
        d["teacher_params"] = state.teacher_params
    return d


def _from_dict(d: dict) -> TrainState:
    return TrainState(step=d["step"], params=d["params"], teacher_params=d.get("teacher_params"),
                      opt_state=d["opt_state"], rng=d["rng"])


class Checkpointer:
    def __init__(self, directory: str, keep: int = 3):
        self.directory = directory if "://" in directory else os.path.abspath(directory)
        self._mngr = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                 enable_async_checkpointing=True))

    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._mngr.all_steps())

    def save(self, step: int, state: TrainState, meta: dict) -> None:
        self._mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(_as_dict(state)),
                                                      meta=ocp.args.JsonSave(meta)), force=True)

    def restore(self, state_template: TrainState, shardings: TrainState, step: int | None = None):
        """-> (state, meta) from `step` (default latest), placed in `shardings`."""
        step = self.latest_step() if step is None else step
        abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                _as_dict(state_template), _as_dict(shardings))
        out = self._mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                               meta=ocp.args.JsonRestore()))
        return _from_dict(out.state), out.meta

    def wait(self) -> None:
        self._mngr.wait_until_finished()

    def close(self) -> None:
        self._mngr.wait_until_finished()
        self._mngr.close()
