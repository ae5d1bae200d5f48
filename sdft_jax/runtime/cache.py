"""Where built inputs are cached (the demo's pretrained base, configs/tiny.py's files, copies of
remote models and data files), and the one way a `file://` or remote path becomes a local one."""
from __future__ import annotations

import hashlib
import os
import re
import shutil

from etils import epath


def cache_root() -> str:
    return os.environ.get("SDFT_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "sdft_jax"))


def plain_path(path: str) -> str:
    """`file:///x` -> `/x` (etils knows no file:// scheme); other paths unchanged."""
    return path[len("file://"):] if path.startswith("file://") else path


def is_remote(path: str) -> bool:
    return "://" in plain_path(path)


def local_copy(uri: str, patterns: tuple[str, ...] = ()) -> str:
    """A local path for a file or folder that may be remote (`gs://`, any etils path)."""
    if not is_remote(uri):
        return plain_path(uri)
    src = epath.Path(uri)
    if not src.exists():
        raise FileNotFoundError(f"{uri}: no such file or folder (or not readable)")
    return copy_once(src, label=uri, patterns=patterns)


def copy_once(src: epath.Path, label: str, patterns: tuple[str, ...] = ()) -> str:
    """Copies a file, or a folder's files (not subfolders; those matching `patterns` when given),
    once into $SDFT_JAX_CACHE/remote/, keyed by `label` and every copied file's size and mtime: a
    changed source gets a new copy, an unchanged one is reused. The copy goes into a temporary
    folder renamed when complete, so a killed copy is never taken as done."""
    files = [src] if src.is_file() else sorted(
        f for f in src.iterdir() if f.is_file() and (not patterns or any(f.match(p) for p in patterns)))
    key = hashlib.sha256(label.encode())
    for f in files:
        st = f.stat()
        key.update(f"{f.name}:{st.length}:{st.mtime}".encode())
    name = re.sub(r"[^\w.-]+", "_", label.split("://", 1)[-1]).strip("_")[-60:]
    target = os.path.join(cache_root(), "remote", f"{key.hexdigest()[:12]}-{name}")
    if not os.path.exists(target):
        tmp = f"{target}.tmp{os.getpid()}"
        os.makedirs(tmp, exist_ok=True)
        for f in files:
            f.copy(epath.Path(tmp) / f.name, overwrite=True)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished the same copy first
            shutil.rmtree(tmp, ignore_errors=True)
    return os.path.join(target, src.name) if src.is_file() else target
