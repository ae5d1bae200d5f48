"""Where a model comes from: `model.path` and the CLIs' `--model` name a local Hugging Face folder
(or `file://` URI), a hub id `ORG/NAME[@REVISION]`, or a remote folder (`gs://...`, any etils
path). Every loader asks `local_folder()` for a folder on this disk; nothing else downloads."""
from __future__ import annotations

import os
import re

from huggingface_hub import constants as hf_constants
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HFValidationError, HfHubHTTPError, LocalEntryNotFoundError

from sdft_jax.runtime.cache import is_remote, local_copy, plain_path

# What a model folder needs: config, tokenizer (chat templates are *.jinja in transformers 5), weights
# (never *.bin / *.pth / ONNX / GGUF copies).
MODEL_FILES = ("*.json", "*.safetensors", "*.jinja", "*.model", "*.tiktoken", "*.txt", "tokenizer*")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")


class ModelSourceError(FileNotFoundError):
    """A model path that names nothing loadable; the message is one line naming the path."""


def kind(path: str) -> str:
    """'local' | 'remote' | 'hub' | 'missing' (an existing folder wins over a hub id of the same name)."""
    if os.path.isdir(os.path.expanduser(plain_path(path))):
        return "local"
    if is_remote(path):
        return "remote"
    return "hub" if _HUB_ID.match(path) else "missing"


def local_folder(path: str) -> str:
    """A local folder holding the model named by `path` (downloaded or copied once, then cached)."""
    k = kind(path)
    if k == "local":
        return os.path.expanduser(plain_path(path))
    if k == "hub":
        return _from_hub(path)
    if k == "remote":
        folder = local_copy(path, MODEL_FILES)
        if not os.path.isfile(os.path.join(folder, "config.json")):
            raise ModelSourceError(f"model path {path!r}: no config.json in it")
        return folder
    raise ModelSourceError(f"model path {path!r}: no such folder (expected a Hugging Face folder, a hub id "
                           f"ORG/NAME[@REVISION] or a gs:// path)")


def _from_hub(spec: str) -> str:
    repo_id, _, revision = spec.partition("@")
    offline = hf_constants.HF_HUB_OFFLINE  # read per call: HF_HOME / HF_HUB_OFFLINE as the process has them
    try:
        return snapshot_download(repo_id, revision=revision or None, allow_patterns=list(MODEL_FILES),
                                 cache_dir=hf_constants.HF_HUB_CACHE, local_files_only=offline)
    except (LocalEntryNotFoundError, HfHubHTTPError, HFValidationError, OSError) as e:
        why = ("not in the local Hugging Face cache and HF_HUB_OFFLINE is set" if offline
               else " ".join(str(e).split())[:160])
        raise ModelSourceError(f"model path {spec!r} (hub id): {why} (cache: {hf_constants.HF_HUB_CACHE})") from None
