"""Writing files and folders so that a crash never leaves half of one, and one writer at a time.

- `atomic_path` / `atomic_write_bytes` / `atomic_write_text`: a file is written
  to a temporary name beside it, fsynced and renamed over the target.
- `atomic_directory`: a folder is built in a staging folder beside it and
  published in one step (Linux `renameat2(RENAME_EXCHANGE)` swaps it with the
  old folder atomically; elsewhere two renames, with the old folder restored
  on the next publish if a crash falls between them). Staging folders left by
  dead processes are removed on the next publish.
- `FileLock`: an exclusive, non-blocking `flock` that the OS releases when the
  process dies, so a killed writer never leaves a stale lock.

Every file and folder gets the mode a plain `open()` / `mkdir()` would give
(the umask's), not the 0600 / 0700 of `mkstemp` / `mkdtemp`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import re
import shutil
import socket
import tempfile
import time

from tfvae.errors import WriteError

__all__ = [
    "atomic_write_text",
    "atomic_write_bytes",
    "atomic_path",
    "atomic_directory",
    "make_readable",
    "file_sha256",
    "FileLock",
    "LockHeld",
    "lock_holder",
    "recover_directory",
]


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = ""):
    """Yield a temporary path beside `path`; on success rename it over `path`.

    The temporary file lives in the same directory, so the final `os.replace`
    is atomic. On an exception the temporary file is removed and `path` is
    left as it was; an OSError (permissions, a full disk) becomes a WriteError
    that names `path`.

    Example:
    >>> import os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "a.txt")
    >>> with atomic_path(target) as tmp:
    ...     _ = open(tmp, "w").write("hi")
    >>> open(target).read()
    'hi'
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=suffix + ".tmp", dir=directory)
    except OSError as e:
        raise WriteError(f"cannot write {path}: {e.strerror or e}") from None
    os.close(fd)
    make_readable(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, OSError):
            raise WriteError(f"cannot write {path}: {e.strerror or e}") from None
        raise


def atomic_write_bytes(path: str, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def make_readable(path: str) -> None:
    """Give `path` the mode a plain open() or mkdir() would: mkstemp and mkdtemp create 0600 / 0700."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~mask)


def file_sha256(path: str) -> str:
    """The hex sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- folders

# Staging and retired folders beside a target TARGET: .TARGET.tmp-HOST-PID-XXXX and .TARGET.old-HOST-PID-XXXX.
_STAGING, _RETIRED = "tmp", "old"
_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


@contextlib.contextmanager
def atomic_directory(path: str):
    """Yield an empty staging folder beside `path`; on success publish it as `path` in one step.

    Whatever is at `path` (nothing, an empty folder, an old version) is
    replaced only once the new folder is complete, and at every instant
    `path` holds either the old folder or the new one. On an exception the
    staging folder is removed and `path` is untouched. The caller checks,
    inside the block, whether replacing `path` is allowed.

    Publishing swaps the two folders with `renameat2(RENAME_EXCHANGE)` (Linux
    3.15+, on local file systems) and then deletes the old one. Where that is
    unavailable it falls back to two renames (old aside, new in): a crash
    between them leaves `path` missing and the old folder under a retired
    name, which the next `atomic_directory` for `path` renames back. Staging
    and retired folders of processes that died (on this host) are removed or
    restored then too.

    Raises:
      WriteError: the parent folder cannot be written.

    Example:
    >>> import os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "export")
    >>> with atomic_directory(target) as staging:
    ...     _ = open(os.path.join(staging, "a.txt"), "w").write("v1")
    >>> open(os.path.join(target, "a.txt")).read()
    'v1'
    """
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
        recover_directory(path)
        staging = tempfile.mkdtemp(prefix=_sibling_prefix(path, _STAGING), dir=parent)
    except OSError as e:
        raise WriteError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        make_readable(staging)
        yield staging
        _fsync_tree(staging)
        _publish(staging, path)
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(e, OSError):
            raise WriteError(f"cannot write {path}: {e.strerror or e}") from None
        raise


def recover_directory(path: str) -> None:
    """Undo what dead processes left beside `path`: restore a retired folder if `path` is missing, drop staging folders."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        return
    pattern = re.compile(re.escape("." + os.path.basename(os.path.abspath(path))) + r"\.(tmp|old)-(.+)-(\d+)-[^-]+$")
    for name in sorted(os.listdir(parent)):
        match = pattern.match(name)
        if not match or match.group(2) != _host() or _alive(int(match.group(3))):
            continue
        leftover = os.path.join(parent, name)
        if match.group(1) == _RETIRED and not os.path.exists(path):
            os.rename(leftover, path)  # the crash fell between the two renames: put the old folder back
        else:
            shutil.rmtree(leftover, ignore_errors=True)


def _publish(staging: str, path: str) -> None:
    if not os.path.isdir(path) or not os.listdir(path):
        os.rename(staging, path)  # rename(2) replaces a missing path or an empty folder atomically
        return
    if _exchange(staging, path):  # `staging` now holds the old folder
        shutil.rmtree(staging, ignore_errors=True)
        return
    retired = tempfile.mkdtemp(prefix=_sibling_prefix(path, _RETIRED), dir=os.path.dirname(os.path.abspath(path)))
    os.rename(path, retired)  # rename(2) replaces the empty folder `retired`
    try:
        os.rename(staging, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.rename(retired, path)  # put the old folder back
        raise
    shutil.rmtree(retired, ignore_errors=True)


def _exchange(a: str, b: str) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False where the OS or file system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(error, os.strerror(error), b)


def _sibling_prefix(path: str, kind: str) -> str:
    return f".{os.path.basename(os.path.abspath(path))}.{kind}-{_host()}-{os.getpid()}-"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _fsync_tree(directory: str) -> None:
    """Every file under `directory` on disk before the folder is published."""
    for root, _, files in os.walk(directory):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())


# --------------------------------------------------------------------------- locks


class LockHeld(Exception):
    """Another live process holds the lock; `holder` is what it wrote into the lock file."""

    def __init__(self, holder: str):
        super().__init__(holder)
        self.holder = holder


class FileLock:
    """An exclusive `flock` on `path`, taken without waiting and released by the OS if the process dies.

    The lock file holds a line naming the holder ("pid 123 on host, since
    2026-11-30T06:40:00, tfvae train"), so a refused process can say who
    holds it. The file is removed on release; a holder checks after locking
    that the file it locked is still the one at `path`, so a concurrent
    release never lets two processes hold the lock.

    Args:
      path: the lock file.
      purpose: what the holder is doing, for the message of a refused process.

    Raises (from `acquire`):
      LockHeld: another process holds it.

    Example:
    >>> import os, tempfile
    >>> lock = FileLock(os.path.join(tempfile.mkdtemp(), ".lock"), "a doctest")
    >>> with lock:
    ...     FileLock(lock.path, "another").acquire()
    Traceback (most recent call last):
    LockHeld: ...
    """

    def __init__(self, path: str, purpose: str):
        self.path = path
        self.purpose = purpose
        self._fd = None

    def acquire(self) -> "FileLock":
        import fcntl

        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
                os.close(fd)
                raise LockHeld(holder or "another process") from None
            try:
                same_file = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same_file = False
            if same_file:
                break
            os.close(fd)  # the holder released and removed it meanwhile: lock the new file
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        line = f"pid {os.getpid()} on {socket.gethostname()}, since {stamp}, {self.purpose}\n".encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, line, 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.remove(self.path)  # while still locked: a waiting process re-checks the path
        os.close(self._fd)  # closing releases the flock
        self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def lock_holder(path: str):
    """What the holder of the lock at `path` wrote, or None when nobody holds it."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another process"
    finally:
        os.close(fd)
    return None
