"""One run per workdir: an exclusive `flock` on WORKDIR/.lock for the life of the run (process 0).

The kernel drops the lock when its process dies, however it dies (kill -9 included), so a lock file
left by a killed run is free and is taken over, with a note naming the run that left it. On a
remote workdir (gs://...) there is no atomic lock: the run says so and goes on unlocked.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time


class WorkdirBusy(RuntimeError):
    pass


class WorkdirLock:
    def __init__(self, workdir: str, say=print):
        self.path = os.path.join(workdir, ".lock")
        self.remote = "://" in workdir
        self._say, self._file = say, None

    def __enter__(self) -> "WorkdirLock":
        if self.remote:
            self._say(f"note: {self.path} is remote: no lock; make sure no other run writes this workdir")
            return self
        f = open(self.path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(f)
            f.close()
            raise WorkdirBusy(f"workdir {os.path.dirname(self.path)} is in use by pid {holder.get('pid')} on "
                              f"{holder.get('host')} (since {holder.get('started')}; lock {self.path}); wait for "
                              f"it to finish or use another --workdir") from None
        previous = _read(f)
        if previous:
            self._say(f"note: taking over the lock of an earlier run that did not finish (pid {previous.get('pid')} "
                      f"on {previous.get('host')}, started {previous.get('started')})")
        f.seek(0)
        f.truncate()
        json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                   "started": time.strftime("%Y-%m-%d %H:%M:%S")}, f)
        f.flush()
        self._file = f
        return self

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            self._file.seek(0)
            self._file.truncate()  # an empty lock file = the last run finished
            self._file.close()  # releases the flock
            self._file = None


def _read(f) -> dict:
    f.seek(0)
    try:
        return json.loads(f.read() or "{}")
    except json.JSONDecodeError:
        return {"pid": "?", "host": "?", "started": "?"}
