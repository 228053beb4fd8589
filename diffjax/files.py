"""The files the project writes and reads: atomic writes, and reads that fail in one line that names the file.

A write goes to a temporary name in the target's directory and is renamed over the target, so a reader never
sees half a file. A JSON, JSON-lines or npz file that is empty, truncated or garbage raises `DamagedFileError`:
one message naming the file, what is wrong with it, and what to do. `exclusive` keeps a second writer out of a
directory.
"""

import contextlib
import fcntl
import json
import os
import socket
import zipfile
from pathlib import Path

import numpy as np


class DamagedFileError(ValueError):
    """A file the project reads is unreadable."""


def atomic(path, write) -> None:
    """Calls `write(f)` on a temporary file, then renames it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def write_text(path, text: str) -> None:
    atomic(path, lambda f: f.write(text.encode()))


def _damaged(path, problem, fix: str) -> DamagedFileError:
    return DamagedFileError(f"{path} is damaged ({problem}): {fix}")


def read_json(path, fix: str, kind=dict):
    """The JSON value of a file, which must be a `kind`."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _damaged(path, "empty" if _empty(path) else f"not JSON: {e}", fix) from None
    if not isinstance(value, kind):
        raise _damaged(path, f"a JSON {type(value).__name__} where a {kind.__name__} belongs", fix)
    return value


def read_jsonl(path, fix: str, keys: tuple = ("step",)) -> list[dict]:
    """The records of a JSON-lines file, each an object with `keys` (the project never writes an empty one)."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise _damaged(path, e, fix) from None
    if not lines:
        raise _damaged(path, "empty", fix)
    records = []
    for i, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise _damaged(path, f"line {i} is not JSON: {e}", fix) from None
        if not isinstance(record, dict) or any(k not in record for k in keys):
            raise _damaged(path, f"line {i} lacks {', '.join(keys)}", fix)
        records.append(record)
    return records


def load_npz(path, fix: str) -> dict[str, np.ndarray]:
    """Every array of an .npz file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise DamagedFileError(f"{path} does not exist: {fix}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise _damaged(path, "empty" if _empty(path) else f"not a readable .npz: {type(e).__name__}", fix) from None


def _empty(path) -> bool:
    try:
        return Path(path).stat().st_size == 0
    except OSError:
        return False


def output_name(**parts) -> str:
    """A file or folder name that says what made it, e.g. `ddim_50steps_eta0_seed0` from
    (sampler="ddim", steps=50, eta=0.0, seed=0); parts that are None are left out."""
    def text(key, value):
        value = f"{value:g}" if isinstance(value, float) else str(value)
        return value if key in ("sampler", "kind") else (f"{value}steps" if key == "steps" else key + value)
    return "_".join(text(k, v) for k, v in parts.items() if v is not None)


LOCK_FILE = ".lock"


class LockedError(RuntimeError):
    """Another process writes into the directory."""


@contextlib.contextmanager
def exclusive(directory, remove_if_unused: bool = False):
    """Holds an OS lock (`flock`) on `directory/.lock` for the block: one writer per directory. A second writer
    gets `LockedError` naming the holder's PID and host before it writes anything; the OS releases the lock when
    its holder exits, however it exits, so a stale lock never blocks. (flock is advisory, and not shared across
    machines on every network file system.) `remove_if_unused`: a directory this call created is removed again
    if the block leaves nothing in it but the lock file (a run that failed its checks leaves nothing behind)."""
    directory = Path(directory)
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise LockedError(f"{directory} is in use by {holder}: wait until it finishes, or write elsewhere "
                          f"(--out)") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"PID {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    try:
        yield
    finally:
        if remove_if_unused and created and [p.name for p in directory.iterdir()] == [LOCK_FILE]:
            (directory / LOCK_FILE).unlink()
            directory.rmdir()
        os.close(fd)   # releases the lock
