"""TFDS builders for the SDFT tasks: array_record files read through the `data_source` API
(random access, no TensorFlow anywhere).

    source = prepare("science", "/path/to/files", data_dir)   # builds once, then reuses
    source["train"][i] -> {task, id, system, prompt, demonstration, answer, raw}

Files come from a local path (TFDS `manual_dir`); with network, `url=` downloads one public
file first. Splits by the words of a file's name (whole words: `latest_train` is train,
`interval` names no split): `test` / `eval` -> test, `val` / `valid` / `validation` ->
validation, anything else -> train. A folder of files none of which names a split (raw
SciKnowEval) is split 75/5/20 deterministically by example id, with a note; a single file is
never split. Example ids name a file by its path below the data folder.
"""
from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import re

import numpy as np
import tensorflow_datasets as tfds

from sdft_jax.data import records

TEXT_FIELDS = ("task", "id", "system", "prompt", "demonstration", "answer", "raw")
RAW_SPLIT = {"train": 0.75, "validation": 0.05, "test": 0.20}


SPLIT_WORDS = {"test": ("test", "eval"), "validation": ("val", "valid", "validation"), "train": ("train",)}


def _split_of(filename: str) -> str | None:
    words = set(re.findall(r"[a-z]+", os.path.basename(filename).lower().removesuffix(".jsonl").removesuffix(".json")))
    return next((split for split, names in SPLIT_WORDS.items() if words & set(names)), None)


class _SDFTBuilder(tfds.core.GeneratorBasedBuilder):
    TASK = ""
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Point `manual_dir` at the task's .json/.jsonl files (see ../shared/data)."
    URL: str | None = None  # set per instance for downloads
    SOURCE: str | None = None  # set per instance: a file or folder (manual_dir must be a folder)

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({k: tfds.features.Text() for k in TEXT_FIELDS}),
            description=f"SDFT task '{self.TASK}': query, demonstration, answer and the raw source row.")

    def _split_generators(self, dl_manager):
        if self.URL:
            source = str(dl_manager.download(self.URL))
        else:
            source = self.SOURCE or str(dl_manager.manual_dir)
        skipped: dict = {}
        by_split: dict[str, list] = {}
        unsplit: list = []
        for f in records.data_files(source):
            rows = records.read_file(self.TASK, f, source, skipped)
            split = _split_of(f) or ("train" if os.path.isfile(source) else None)
            (by_split.setdefault(split, []) if split else unsplit).extend(rows)
        if not unsplit and not any(by_split.values()):
            raise records.DataError(f"{source}: no rows (the {self.TASK} data file{'s are' if os.path.isdir(source) else ' is'} "
                                    f"empty)")
        if unsplit:
            if by_split:  # named files present: unnamed ones are training data
                by_split.setdefault("train", []).extend(unsplit)
            else:
                by_split = records.deterministic_split(unsplit, RAW_SPLIT)
                print(f"[sdft_jax] data: no file under {source} names a split (train / val / test); its "
                      f"{len(unsplit)} rows are split {', '.join(f'{k} {len(v)}' for k, v in by_split.items())} "
                      f"by example id", flush=True)
        self._skipped = skipped
        return {name: self._generate_examples(rows) for name, rows in by_split.items() if rows}

    def _generate_examples(self, rows):
        for ex in rows:
            yield ex["id"], ex


class SdftTooluse(_SDFTBuilder):
    TASK = "tooluse"


class SdftScience(_SDFTBuilder):
    TASK = "science"


class SdftMedical(_SDFTBuilder):
    TASK = "medical"


class SdftKnowledge(_SDFTBuilder):
    TASK = "knowledge"


class Demonstrations(_SDFTBuilder):
    TASK = "demonstrations"


BUILDERS = {"tooluse": SdftTooluse, "science": SdftScience, "medical": SdftMedical,
            "knowledge": SdftKnowledge, "demonstrations": Demonstrations}


class DataSource:
    """Random-access view of one split; decodes the stored bytes to str."""

    def __init__(self, source):
        self._source = source

    def __len__(self):
        return len(self._source)

    def __getitem__(self, i: int) -> dict[str, str]:
        row = self._source[int(i)]
        return {k: v.decode("utf-8") if isinstance(v, (bytes, np.bytes_)) else str(v) for k, v in row.items()}

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def prepare(task: str, path: str | None, data_dir: str, url: str | None = None) -> dict[str, DataSource]:
    """Builds the task's array_record files under `data_dir` once per source content (path, size and
    mtime of every file) and returns {split: DataSource}."""
    if task not in BUILDERS:
        raise ValueError(f"data.task={task!r}; expected one of {sorted(BUILDERS)}")
    if path is None and url is None:
        raise ValueError(f"data.path is required for task {task!r} (no download URL given)")
    cls = BUILDERS[task]
    if path is not None:
        # Keyed by content: every source file's path, size and mtime (an edited file is rebuilt).
        files = records.data_files(path)  # clear error for a missing path before TFDS gets involved
        stamp = [(os.path.abspath(f), os.path.getsize(f), os.stat(f).st_mtime_ns) for f in files]
        key = json.dumps([task, os.path.abspath(path), stamp])
    else:
        key = json.dumps([task, url])
    sub = os.path.join(data_dir, hashlib.sha1(key.encode()).hexdigest()[:10])
    with _preparing(sub):  # another run sharing data_dir may be building the same files
        builder = cls(data_dir=sub, file_format="array_record")
        builder.URL, builder.SOURCE = url, path
        if not builder.data_path.exists() or not (builder.data_path / "dataset_info.json").exists():
            if path is not None and _prepared_before(data_dir, task, path):
                print(f"[sdft_jax] data: {path} changed since it was last prepared (size or mtime); rebuilding "
                      f"into {sub}", flush=True)
            builder.download_and_prepare()
            with open(os.path.join(sub, "source.json"), "w") as f:
                json.dump({"task": task, "path": path, "url": url, "skipped": getattr(builder, "_skipped", {})}, f)
    return {name: DataSource(src) for name, src in builder.as_data_source().items()}


@contextlib.contextmanager
def _preparing(sub: str):
    """An exclusive flock on SUB.lock while the files are checked and built: a second run sharing
    data_dir waits, then reuses them (it used to crash with FileExistsError). None on gs://."""
    if "://" in sub:
        yield
        return
    os.makedirs(os.path.dirname(sub) or ".", exist_ok=True)
    with open(f"{sub}.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"[sdft_jax] data: another process is preparing {sub}; waiting for it", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _prepared_before(data_dir: str, task: str, path: str) -> bool:
    """Whether some earlier preparation under data_dir came from this task and path."""
    for meta in glob.glob(os.path.join(data_dir, "*", "source.json")):
        with open(meta) as f:
            m = json.load(f)
        if m.get("task") == task and m.get("path") and os.path.abspath(m["path"]) == os.path.abspath(path):
            return True
    return False
