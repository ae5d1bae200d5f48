"""What a run raises when the user can fix it: reported as one line by the entry points and recorded
as a sweep point's outcome, never a traceback."""
from __future__ import annotations

from sdft_jax.resolve import ConfigError
from sdft_jax.runtime.checkpoint import CheckpointError
from sdft_jax.runtime.workdir_lock import WorkdirBusy


class TrainingDiverged(RuntimeError):
    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step  # the first step whose metrics were not finite


class NothingToTrain(ValueError):
    """Steps in a row on which no completion token carried loss: the run would export its base."""


class WorkdirError(ValueError):
    pass


USER_ERRORS = (ConfigError, TrainingDiverged, NothingToTrain, WorkdirBusy, CheckpointError, FileNotFoundError,
               ValueError)
