"""The host's verdict on sampled completions (method=rejection): decode each row as the evaluators do
(stop tokens dropped) and accept it when the task's scorer gives it full marks."""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import numpy as np

from sdft_jax.eval.generation import completion_text, scored_example
from sdft_jax.eval.scorers import score_completion


def make_judge(rows, tokenizer, scorer: str, stop_ids: Sequence[int], generations: int = 1) -> Callable:
    """judge(inputs, rollout) -> accepted [B * generations] (0/1): `inputs["index"]` names each prompt's
    row of `rows` (the training split), each repeated `generations` times as in the rollout."""
    stops = set(int(s) for s in stop_ids)

    def judge(inputs, rollout) -> np.ndarray:
        index = np.repeat(np.asarray(jax.device_get(inputs["index"])), generations)
        tokens, lengths = np.asarray(jax.device_get(rollout.tokens)), np.asarray(jax.device_get(rollout.lengths))
        return np.asarray([score_completion(scorer, completion_text(tokenizer, tokens[r], lengths[r], stops),
                                            scored_example(rows[int(i)])) >= 1.0 for r, i in enumerate(index)],
                          np.int32)
    return judge
