"""Task data: readers and TFDS builders (array_record, no TensorFlow), student/teacher contexts,
tokenization with the truncation policy, and resumable batching."""
from sdft_jax.data.buckets import buckets_up_to
from sdft_jax.data.builders import BUILDERS, DataSource, prepare
from sdft_jax.data.pipeline import (Batcher, Lengths, TokenizedExample, TokenStats, end_of_turn_id, to_global,
                                    tokenize_all)
from sdft_jax.data.prompts import (DEFAULT_TEACHER_TEMPLATE, student_context, student_messages,
                                   teacher_context, teacher_messages)
from sdft_jax.data.records import READERS, DataError, read_task

__all__ = [
    "BUILDERS", "DataSource", "prepare", "Batcher", "Lengths", "TokenizedExample", "TokenStats",
    "buckets_up_to", "end_of_turn_id", "to_global", "tokenize_all", "DEFAULT_TEACHER_TEMPLATE",
    "student_context", "student_messages", "teacher_context", "teacher_messages", "READERS", "DataError",
    "read_task",
]
