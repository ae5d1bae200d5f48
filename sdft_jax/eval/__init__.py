"""Evaluation: task scorers, generation-based evaluation (student or teacher context)."""
from sdft_jax.eval.scorers import (SCORERS, parse_actions, pass_at_k, score_completion,
                                   score_knowledge_detailed, set_knowledge_judge)

__all__ = ["SCORERS", "parse_actions", "pass_at_k", "score_completion", "score_knowledge_detailed",
           "set_knowledge_judge"]
