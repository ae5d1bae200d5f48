"""The token ids that end a completion for a checkpoint folder."""
from __future__ import annotations

import json
import os


def stop_token_ids(path: str, tokenizer) -> tuple[int, ...]:
    """EOS ids from generation_config.json (Instruct models list several) plus the tokenizer's."""
    ids = set()
    gen_path = os.path.join(path, "generation_config.json")
    if os.path.isfile(gen_path):
        with open(gen_path) as f:
            eos = json.load(f).get("eos_token_id")
        ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer is not None and tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return tuple(sorted(ids))
