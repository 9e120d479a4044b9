"""Folders danlu writes: run directories and the output folders of ensemble, quantize and friends.

One rule for every verb, here and nowhere else:

- A folder is checked before anything is written (:func:`plan_dir`) and created only once the
  work is known to start (:meth:`Target.claim`). A start that fails removes what this
  invocation created; a folder that existed empty is left empty.
- danlu marks each folder it creates with ``.danlu-run`` (a run id and the time). ``--overwrite``
  replaces only a marked folder, never the working directory, a folder above it, the home
  directory or a filesystem root. The replaced folder is set aside until the new one has
  started, so a failed start puts it back.
- One process writes a run at a time: :func:`lock_run` holds an OS lock (``fcntl.flock``) on
  ``.danlu-lock`` for the whole of train, resume or finetune; the OS drops it when the process
  dies, even by SIGKILL. A second writer is refused at once with the first one's pid and host.
- A failure of the environment (read-only disk, permission denied, disk full) is one line that
  says what the environment lacks (:func:`environment_error`).

Core module: it imports no capability, and no torch.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import stat
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from .errors import UserError

try:   # POSIX; elsewhere runs are not locked
    import fcntl
except ImportError:   # pragma: no cover - Windows
    fcntl = None

MARKER = ".danlu-run"
LOCK_FILE = ".danlu-lock"

_WHY = {   # errno -> (what the environment lacks, how to fix it)
    errno.EROFS: ("the file system is read-only", "choose a folder on a writable disk"),
    errno.EACCES: ("permission denied", "choose a folder you may write to, or change its permissions"),
    errno.EPERM: ("operation not permitted", "choose a folder you may write to, or change its permissions"),
    errno.ENOSPC: ("no space left on the device", "free some space or choose a folder on another disk"),
    errno.EDQUOT: ("the disk quota is exceeded", "free some space or choose a folder on another disk"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "choose a path whose parents are folders"),
    errno.EISDIR: ("it is a folder", "give a file path"),
    errno.ENAMETOOLONG: ("the name is too long", "choose a shorter path"),
}
ENVIRONMENT_ERRNOS = frozenset(_WHY) - {errno.EISDIR}


# ---------------------------------------------------------------------------------------------
# Names and messages
# ---------------------------------------------------------------------------------------------

def environment_error(err: OSError, path, doing: str = "write", after: str = "") -> UserError:
    """One line for an OSError the environment caused: the path, what is lacking, the fix."""
    lacks, fix = _WHY.get(err.errno, (err.strerror or str(err), "check the path and the disk"))
    detail = f" (at {err.filename})" if err.filename is not None and str(err.filename) != str(path) else ""
    return UserError(f"{path}: cannot {doing} — {lacks}{detail}; {fix}{after}")


# ---------------------------------------------------------------------------------------------
# Markers
# ---------------------------------------------------------------------------------------------

def read_marker(path: Path) -> dict | None:
    """The marker of a folder danlu created, or None (not danlu's, or from before markers)."""
    marker = Path(path) / MARKER
    if marker.is_symlink() or not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("run_id"), str) else None


def _write_marker(path: Path, kind: str, made: bool) -> None:
    data = {"run_id": uuid.uuid4().hex, "kind": kind, "made": made,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "pid": os.getpid(), "host": socket.gethostname()}
    tmp = path / f"{MARKER}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(data) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path / MARKER)


# ---------------------------------------------------------------------------------------------
# Locks
# ---------------------------------------------------------------------------------------------

class RunLock:
    """An exclusive ``flock`` on ``RUN/.danlu-lock``; the file says who holds it."""

    def __init__(self, path: Path, fd: int | None):
        self.path = path
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        for settle in SETTLE_BEFORE_RELEASE:   # e.g. checkpoints still being written into the run
            settle(self.path)
        try:   # remove the file while still holding it, and only if it is still ours
            if _same_file(self.fd, self.path / LOCK_FILE):
                os.unlink(self.path / LOCK_FILE)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, exc_type, exc, tb):
        self.release()
        if isinstance(exc, OSError) and exc.errno in ENVIRONMENT_ERRNOS:   # e.g. the disk filled up mid-run
            raise environment_error(exc, self.path, "write in it",
                                    f"; then continue with `danlu resume {self.path}`") from None
        return False


#: Called with a run folder before its lock is released (or the folder rolled back): what writes
#: into a run in the background registers a wait here (the checkpoint writer does), so no other
#: process takes the run while this one still writes into it.
SETTLE_BEFORE_RELEASE: list = []


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
    except (OSError, ValueError):
        info = {}
    if not info.get("pid"):
        return "another process"
    since = f", since {info['started']}" if info.get("started") else ""
    command = f", `{info['command']}`" if info.get("command") else ""
    return f"process {info['pid']} on host {info.get('host', '?')}{since}{command}"


def lock_run(path) -> RunLock:
    """Take the run's write lock or refuse at once, naming the process that holds it."""
    path = Path(path)
    if fcntl is None:   # pragma: no cover - Windows
        return RunLock(path, None)
    lock_path = path / LOCK_FILE
    while True:
        try:   # never through a link: the lock file is written, and must stay inside the run
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as err:
            if err.errno in ENVIRONMENT_ERRNOS:
                raise environment_error(err, path, "lock it") from None
            if err.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.EOPNOTSUPP):
                raise UserError(f"{lock_path}: is not danlu's lock file (a link, folder or device has its "
                                f"name); remove it and run the command again") from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):   # a FIFO or device with the lock's name
            os.close(fd)
            raise UserError(f"{lock_path}: is not danlu's lock file (not a regular file); remove it and run "
                            f"the command again")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise UserError(f"{path}: the run is being written by {holder}; one process writes a run at a time — "
                            f"wait for it to finish, or stop it and then `danlu resume {path}`") from None
        if _same_file(fd, lock_path):   # not a file its last holder removed between our open and lock
            break
        os.close(fd)
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": _command()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
    return RunLock(path, fd)


def _command() -> str:
    import sys

    argv = [os.path.basename(sys.argv[0] or "python")] + sys.argv[1:]
    if argv[0] in ("__main__.py", "-m", "-c") or argv[0].startswith("python"):
        argv[0] = "danlu"
    return " ".join(argv)[:300]


def _is_locked(path: Path) -> str | None:
    """Who holds the run's lock, or None when nobody does (the lock is not kept)."""
    if fcntl is None or not (path / LOCK_FILE).is_file():   # pragma: no cover - Windows
        return None
    try:
        fd = os.open(path / LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder(fd)
    finally:
        os.close(fd)
    return None


# ---------------------------------------------------------------------------------------------
# Checking a folder before anything is written
# ---------------------------------------------------------------------------------------------

def numbered(base: Path, taken: Callable[[Path], bool] = os.path.lexists, suffix: str = "") -> Path:
    """``base``, or ``base-2``, ``base-3`` ... (each followed by ``suffix``, e.g. ``.png``): the first
    that is not ``taken`` — by default, the first name nothing has (not even a dangling link)."""
    base = Path(base)
    path, n = base.with_name(base.name + suffix), 1
    while taken(path):
        n += 1
        path = base.with_name(f"{base.name}-{n}{suffix}")
    return path


def holds_something(path: Path) -> bool:
    """Taken for a new output folder: anything but a missing path or an empty folder."""
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def _protected(path: Path) -> str | None:
    """Why ``path`` may never be replaced, or None."""
    real = path.resolve()
    cwd = Path.cwd().resolve()
    if real == Path(real.anchor):
        return "a filesystem root"
    if real == cwd:
        return "the working directory"
    if real in cwd.parents:
        return "a folder above the working directory"
    home = Path.home().resolve()
    if real == home or real in home.parents:
        return "your home directory" if real == home else "a folder above your home directory"
    return None


def _check_parents(path: Path, flag: str) -> None:
    """The nearest existing folder above ``path`` must be a folder we may write in."""
    for parent in path.parents:
        if not os.path.lexists(parent):
            continue
        if not parent.is_dir():
            raise UserError(f"{parent}: is a file, so {path} cannot be created below it; "
                            f"choose another {flag} (or move the file)")
        if not os.access(parent, os.W_OK | os.X_OK):
            read_only = bool(os.statvfs(parent).f_flag & os.ST_RDONLY)
            code = errno.EROFS if read_only else errno.EACCES
            raise environment_error(OSError(code, os.strerror(code), str(parent)), path, "create it")
        return


class Target:
    """A folder checked and ready to be created (``claim``); nothing is written yet."""

    def __init__(self, path: Path, *, replaces: bool, explicit: bool, kind: str, flag: str):
        self.path = path
        self.replaces = replaces     # an existing folder danlu created is replaced
        self.explicit = explicit     # the user named it (else a free numbered default)
        self.kind = kind
        self.flag = flag

    def claim(self, lock: bool = True) -> "Claim":
        return Claim(self, lock)

    def create(self) -> Path:
        """Create (or replace) the folder at once, for output written in one go."""
        with self.claim(lock=False) as claim:
            claim.started()
        return self.path


def plan_dir(path=None, *, default=None, overwrite: bool = False, flag: str = "--run-dir", kind: str = "run",
             keep=()) -> Target:
    """Check the folder danlu is about to write, before anything is written.

    ``path``: the folder the user named (``flag`` says how), or None for a free numbered
    ``default``. A named folder that holds anything is refused unless ``overwrite``, and then it
    must be one danlu created (marked), not locked by a running process, not the working
    directory or above, and must not hold any of ``keep`` (files the new run still needs).
    """
    if path is None:
        base = Path(default)
        if os.path.lexists(base.parent) and not base.parent.is_dir():
            raise UserError(f"{base.parent}: is a file, not a folder; output.runs_dir must name a folder — "
                            f"set output.runs_dir to another path, or give {flag}")
        target = numbered(base)
        _check_parents(target, flag)
        return Target(target, replaces=False, explicit=False, kind=kind, flag=flag)
    path = Path(path)
    if str(path) == "" or "\x00" in str(path):
        raise UserError(f"{flag} {str(path)!r} is not a usable path; give a folder, e.g. {flag} runs/NAME")
    if path.is_symlink() and not path.is_dir():
        raise UserError(f"{path}: is a symbolic link to no folder; give a folder as {flag}")
    if os.path.lexists(path) and not path.is_dir():
        raise UserError(f"{path}: is a file, not a folder; choose another {flag}")
    _check_parents(path, flag)
    if not path.is_dir() or not any(path.iterdir()):
        return Target(path, replaces=False, explicit=True, kind=kind, flag=flag)
    holder = _is_locked(path)
    if holder is not None:
        raise UserError(f"{path}: is being written by {holder}; wait for it to finish or stop it — "
                        f"a run in progress is never replaced")
    if not overwrite:
        hint = f"continue it with `danlu resume {path}`, " if kind == "run" and (path / "recipe.yaml").is_file() else ""
        raise UserError(f"{path}: already exists and is not empty; choose another {flag}, {hint}or pass "
                        f"--overwrite to replace a folder danlu created")
    if path.is_symlink():
        raise UserError(f"{path}: is a symbolic link; --overwrite replaces only a folder danlu created there, "
                        f"so give that folder itself as {flag}")
    why = _protected(path)
    if why is not None:
        raise UserError(f"{path}: is {why}; --overwrite never replaces it — choose a new folder, "
                        f"e.g. {flag} runs/NAME")
    if read_marker(path) is None:
        raise UserError(f"{path}: was not created by danlu (no {MARKER} marker; folders from danlu before "
                        f"markers have none either), so --overwrite does not replace it; delete it by hand "
                        f"if you mean to, or choose another {flag}")
    for item in keep:
        item = Path(item).resolve()
        if path.resolve() in item.parents:
            raise UserError(f"{path}: holds {item}, which this run reads; --overwrite would delete it — move "
                            f"it out or choose another {flag}")
    return Target(path, replaces=True, explicit=True, kind=kind, flag=flag)


# ---------------------------------------------------------------------------------------------
# Creating it: claim, start, or roll back
# ---------------------------------------------------------------------------------------------

class Claim:
    """The folder being created by this invocation (a context manager).

    Entering creates (or replaces) the folder, marks it and takes its lock. Until ``started()`` a
    failure removes what this invocation made and puts back a replaced folder; after it, the
    folder stays (it can be resumed). The lock is released on exit either way.
    """

    def __init__(self, target: Target, lock: bool):
        self.target = target
        self.path = target.path
        self._want_lock = lock
        self._lock: RunLock | None = None
        self._made: list[Path] = []       # folders this invocation created, top first
        self._adopted = False             # the folder existed empty
        self._aside: Path | None = None   # the replaced folder, until the new one has started
        self._aside_made = True
        self._old_lock: RunLock | None = None
        self._started = False

    def __enter__(self) -> "Claim":
        try:
            self._open()
        except BaseException as err:
            self._roll_back()
            self.release()
            if isinstance(err, OSError) and err.errno in ENVIRONMENT_ERRNOS:
                raise environment_error(err, self.path, "create it") from None
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self.started()
            elif not self._started:
                self._roll_back()
        finally:
            self.release()
        if isinstance(exc, OSError) and exc.errno in ENVIRONMENT_ERRNOS:
            after = f"; the run can continue with `danlu resume {self.path}`" if (
                self._started and self.target.kind == "run" and (self.path / "recipe.yaml").is_file()) else ""
            raise environment_error(exc, self.path, "write in it", after) from None
        return False

    def _open(self) -> None:
        path = self.path
        if self.target.replaces:
            self._set_aside()
        self._made = _make_dirs(path, exist_ok=self.target.explicit)
        self._adopted = not self._made
        if self._adopted and any(path.iterdir()):
            raise UserError(f"{path}: was filled by another process meanwhile; choose another {self.target.flag}")
        if self._want_lock:
            try:
                self._lock = lock_run(path)
            except UserError:
                self._made, self._adopted = [], False   # another process owns it now: leave it alone
                raise
        _write_marker(path, self.target.kind, made=not self._adopted)

    def _set_aside(self) -> None:
        path = self.path
        self._old_lock = lock_run(path) if fcntl is not None else None
        marker = read_marker(path) or {}
        self._aside = numbered(path.with_name(f".{path.name}.danlu-replaced-{os.getpid()}"))
        self._aside_made = marker.get("made", True) is not False and not os.path.ismount(path)
        if self._aside_made:
            os.rename(path, self._aside)
        else:   # a folder that existed before danlu wrote into it: move its contents, keep the folder
            self._aside.mkdir()
            for entry in list(path.iterdir()):
                os.rename(entry, self._aside / entry.name)

    def started(self) -> None:
        """The work has started: the folder stays from now on, and a replaced one is deleted."""
        if self._started:
            return
        self._started = True
        if self._aside is not None:
            shutil.rmtree(self._aside, ignore_errors=True)
            self._aside = None
        if self._old_lock is not None:
            self._old_lock.release()
            self._old_lock = None

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if self._old_lock is not None:
            self._old_lock.release()
            self._old_lock = None

    def _roll_back(self) -> None:
        """Remove what this invocation created; put a replaced folder back."""
        path = self.path
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        try:
            if self._made:
                shutil.rmtree(path, ignore_errors=True)
                for folder in reversed(self._made[:-1]):
                    _rmdir_quietly(folder)
            elif self._adopted:
                for entry in list(path.iterdir()):
                    _remove(entry)
            if self._aside is not None:
                if self._aside_made:
                    if not os.path.lexists(path):   # else it stays set aside, never deleted
                        os.rename(self._aside, path)
                else:
                    for entry in list(self._aside.iterdir()):
                        os.rename(entry, path / entry.name)
                    _rmdir_quietly(self._aside)
                self._aside = None
        except OSError:   # best effort: the original error is the one to report
            pass
        self._made, self._adopted = [], False


def _make_dirs(path: Path, exist_ok: bool) -> list[Path]:
    """Create ``path`` and missing parents; returns the folders created, top first ([] when
    ``path`` existed already)."""
    missing = []
    for folder in [path, *path.parents]:
        if os.path.lexists(folder):
            break
        missing.append(folder)
    missing.reverse()
    made = []
    try:
        for folder in missing:
            try:
                folder.mkdir()
            except FileExistsError:
                if folder == path and not exist_ok:
                    raise UserError(f"{path}: was created by another process meanwhile; run the command again "
                                    f"(it takes the next free name)") from None
                if not folder.is_dir():
                    raise
                continue
            made.append(folder)
    except BaseException:
        for folder in reversed(made):
            _rmdir_quietly(folder)
        raise
    if made and made[-1] != path:   # path itself existed (made concurrently): not ours
        return []
    return made


def _rmdir_quietly(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        try:
            entry.unlink()
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------
# Output files (predictions, exports)
# ---------------------------------------------------------------------------------------------

def check_output_file(path, overwrite: bool, flag: str = "-o") -> None:
    """Before any work: a file the user named is kept unless ``overwrite``; its folder must be
    creatable and writable."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder; give a file path as {flag}")
    if os.path.lexists(path) and not overwrite:
        raise UserError(f"{path}: already exists; choose another {flag} path or pass --overwrite")
    _check_parents(path, flag)


@contextmanager
def writing_file(path):
    """Around writing one output file: its missing folders are created, and a failure removes
    them and any temporary file beside it, then says what the environment lacks."""
    path = Path(path)
    parent = path.parent
    temp_prefix = f".{path.name}."
    before = set()
    if parent.is_dir():
        before = {p.name for p in parent.iterdir() if p.name.startswith(temp_prefix)}
    made: list[Path] = []
    try:
        made = _make_dirs(parent, exist_ok=True)
        yield path
    except OSError as err:
        if parent.is_dir():
            for p in parent.iterdir():
                if p.name.startswith(temp_prefix) and p.name not in before:
                    _remove(p)
        for folder in reversed(made):
            _rmdir_quietly(folder)
        if err.errno in ENVIRONMENT_ERRNOS:
            raise environment_error(err, path, "write it") from None
        raise
