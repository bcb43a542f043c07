"""Exclusive output folders: a run (or a search) holds ``OUTPUT_DIR/.fturun.run.lock`` for its
lifetime, so a second run into the same folder is refused at once, naming the holder (pid, host,
start time, command), instead of mixing its files with the first one's.

The lock is an ``flock`` on the file (the kernel releases it when the holder dies, even by
SIGKILL); the file's content names the holder. A lock file whose ``flock`` is free was left by a
process that is gone: it is taken over with a warning. The workers of one shared search study
(``search.storage``) share their folder: they hold the lock in shared mode, keyed by the study,
and a plain run or another study is still refused. Under a launcher only rank 0 takes the lock
(the caller decides: the other ranks never write the folder's files)."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import dataclass

from ..core.errors import FturunError, RecipeRuntimeError, environment_fault
from ..core.redaction import redact_override

LOCK_FILE = ".fturun.run.lock"
#: the exit code of a run refused because another run holds its output folder (sysexits'
#: EX_TEMPFAIL: try again once the other run has ended)
EXIT_LOCKED = 75
READ_TRIES = 20  # a holder writes its details right after locking: readers wait that long
ACQUIRE_TRIES = 20


class FolderLocked(FturunError):
    """Another live run holds the output folder."""

    exit_code = EXIT_LOCKED


@dataclass(frozen=True)
class Holder:
    """Who holds (or held) a folder's lock, as its lock file says."""

    pid: int
    host: str
    started: float  # time.time() when the lock was taken
    command: str
    study: str | None = None  # the shared search study of the holder, None for a plain run

    def describe(self) -> str:
        if not self.pid:
            return "another fturun process that is starting"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        what = f"worker of search study '{self.study}'" if self.study else "run"
        return f"a {what}: pid {self.pid} on {self.host}, started {when}: {self.command}"

    def as_json(self) -> dict:
        return {"pid": self.pid, "host": self.host, "started": self.started,
                "command": self.command, "study": self.study}

    @classmethod
    def of_this_process(cls, study: str | None = None) -> Holder:
        return cls(pid=os.getpid(), host=socket.gethostname(), started=time.time(),
                   command=" ".join(["fturun", *map(redact_override, sys.argv[1:])])[:500],
                   study=study)


def parse_holder(text: str) -> Holder | None:
    """The :class:`Holder` in a lock file's text, None when it is empty or unreadable."""
    try:
        data = json.loads(text)
        return Holder(pid=int(data["pid"]), host=str(data["host"]),
                      started=float(data["started"]), command=str(data.get("command", "")),
                      study=data.get("study"))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def process_alive(holder: Holder) -> bool | None:
    """Whether the holder's process still runs: None when it ran on another host (unknown).
    A pid reused by a younger process does not count as the holder."""
    if holder.host != socket.gethostname():
        return None
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process
    try:
        import psutil

        process = psutil.Process(holder.pid)
        return process.status() != psutil.STATUS_ZOMBIE and \
            process.create_time() <= holder.started + 2
    except Exception:  # noqa: BLE001 - psutil missing or the process just ended
        return True


class FolderLock:
    """The lock of one output folder (see the module docstring). ``study``: the key of a
    shared search study whose workers may share the folder; None for a plain run (exclusive).
    Use as a context manager, or :meth:`acquire` / :meth:`release`."""

    def __init__(self, folder: str, study: str | None = None, log=None):
        self.folder, self.study = folder, study
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        self.path = os.path.join(folder, LOCK_FILE)
        self.fd = None
        self.flock = True  # False on a filesystem without flock: the holder's pid decides

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
        return False

    def acquire(self) -> FolderLock:
        """Take the lock; raise :class:`FolderLocked` naming the holder when a live run has it,
        :class:`RecipeRuntimeError` when the folder cannot be written. Holding it already,
        nothing changes."""
        if self.fd is not None:
            return self
        try:
            os.makedirs(self.folder, exist_ok=True)
        except OSError as exc:
            raise unwritable(self.folder, exc) from None
        for _ in range(ACQUIRE_TRIES):
            fd = self._open()
            if self._lock(fd, fcntl.LOCK_SH if self.study else fcntl.LOCK_EX):
                if self._is_current(fd):
                    self.fd = fd
                    self._claim()
                    return self
            os.close(fd)  # the file was replaced meanwhile, or a study worker is releasing
            time.sleep(0.05)
        raise FolderLocked(f"{self.folder} is locked ({self.path}) and its holder could not be "
                           "read; if no fturun run uses the folder, remove that file")

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise unwritable(self.folder, exc) from None

    def _lock(self, fd: int, mode: int) -> bool:
        """flock ``fd`` without waiting: True when taken; False to retry; raise when a live
        holder has it."""
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            holder = read_holder(fd)
            if holder is not None and self.study and holder.study == self.study:
                return False  # a worker of this study is releasing it: try again
            os.close(fd)
            raise self._refusal(holder) from None
        except OSError as exc:
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                return self._without_flock(fd)
            os.close(fd)
            raise unwritable(self.folder, exc) from None

    def _without_flock(self, fd: int) -> bool:
        """A filesystem without flock: the holder's pid decides (same host only)."""
        self.flock = False
        holder = read_holder(fd, tries=1)
        shared = self.study is not None and holder is not None and holder.study == self.study
        if holder is not None and holder.pid != os.getpid() and not shared and \
                process_alive(holder) is not False:
            os.close(fd)
            raise self._refusal(holder)
        return True

    def _is_current(self, fd: int) -> bool:
        """Whether ``fd`` is still the file at the lock's path (a releasing holder removes it)."""
        try:
            return os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            return False

    def _claim(self) -> None:
        """Write this process into the lock file: a stale holder is taken over with a warning;
        a study worker joining live workers of its study leaves their details in place."""
        previous = read_holder(self.fd, tries=1)
        if not self.flock:  # _without_flock has decided
            if previous is None or previous.study != self.study:
                _write(self.fd, Holder.of_this_process(self.study))
            return
        if self.study and not _try_flock(self.fd, fcntl.LOCK_EX):
            # other workers share the folder. (A refused upgrade drops the shared lock on
            # Linux: take it again.)
            if not _try_flock(self.fd, fcntl.LOCK_SH) or \
                    (previous is not None and previous.study != self.study):
                raise self._abandon(read_holder(self.fd, tries=1))
            if previous is None:
                _write(self.fd, Holder.of_this_process(self.study))
            return
        if previous is not None and (previous.pid, previous.host) != (os.getpid(),
                                                                      socket.gethostname()):
            # the flock is free: the kernel dropped it with its holder's last process
            self.log(f"warning: {self.folder} was locked by {previous.describe()}; that "
                     "process is gone, taking the lock over")
        _write(self.fd, Holder.of_this_process(self.study))
        if self.study and not _try_flock(self.fd, fcntl.LOCK_SH):  # share it again
            raise self._abandon(read_holder(self.fd, tries=1))

    def _abandon(self, holder: Holder | None) -> FolderLocked:
        """Close the lock file without removing it (it is the holder's): the refusal to raise."""
        fd, self.fd = self.fd, None
        os.close(fd)
        return self._refusal(holder)

    def _refusal(self, holder: Holder | None) -> FolderLocked:
        who = (holder or Holder(0, "", time.time(), "")).describe()
        return FolderLocked(
            f"{self.folder} is in use by {who}. Wait for it to end, or give this run another "
            "training.output_dir (two runs in one folder would mix their files)")

    def release(self) -> None:
        """Give the lock up; the last holder removes the lock file."""
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            if (not self.study or _try_flock(fd, fcntl.LOCK_EX)) and self._is_current(fd):
                os.remove(self.path)
        except OSError:
            pass  # the folder went away or became read-only: the kernel drops the lock anyway
        finally:
            os.close(fd)


def folder_holder(folder: str) -> Holder | None:
    """Who holds ``folder``'s lock now (None when nobody does), without keeping it: for checks
    made before a run starts (``fturun launch``)."""
    path = os.path.join(folder, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return read_holder(fd) or Holder(0, "", time.time(), "")
        except OSError:  # no flock on this filesystem: the holder's pid decides
            holder = read_holder(fd, tries=1)
            return holder if holder is not None and process_alive(holder) is not False \
                else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None  # free (a stale file is taken over by the run)
    finally:
        os.close(fd)


def read_holder(fd: int, tries: int = READ_TRIES) -> Holder | None:
    """The holder written in the open lock file ``fd`` (waiting briefly for a holder that is
    writing it)."""
    for attempt in range(tries):
        try:
            holder = parse_holder(os.pread(fd, 65536, 0).decode("utf-8", "replace"))
        except OSError:
            return None
        if holder is not None or attempt == tries - 1:
            return holder
        time.sleep(0.025)
    return None


def unwritable(folder: str, exc: OSError) -> FturunError:
    """The error for an output folder that cannot be created or written (read-only, full,
    not permitted)."""
    return environment_fault(exc, folder, "while locking the output folder") or \
        RecipeRuntimeError(f"cannot write the output folder {folder}: {exc.strerror or exc}. "
                           "Choose a writable training.output_dir")


def _try_flock(fd: int, mode: int) -> bool:
    """flock without waiting: whether it was taken."""
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _write(fd: int, holder: Holder) -> None:
    """The holder's details, written in place: the lock is on this very file, so it cannot be
    replaced by a rename as :mod:`fturun.core.io` writes outputs."""
    data = (json.dumps(holder.as_json()) + "\n").encode("utf-8")
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)
