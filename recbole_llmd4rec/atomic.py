"""Files written whole or not at all: a killed run (or a crashed machine) never leaves half a
checkpoint or table."""

import hashlib
import json
import os
from contextlib import contextmanager, suppress
from pathlib import Path


@contextmanager
def replacing(path, suffix=""):
    """Yield a temporary path beside ``path`` to write to; when the block ends without error it
    is renamed over ``path`` (one atomic step), when it fails it is removed. ``suffix`` keeps an
    extension that a writer reads the format from (matplotlib's ``savefig``)."""
    path = os.fspath(path)
    temporary = f"{path}.tmp{os.getpid()}{suffix}"
    try:
        yield temporary
    except BaseException:
        with suppress(FileNotFoundError):
            os.remove(temporary)
        raise
    _flush_to_disk(temporary)
    os.replace(temporary, path)
    if os.name != "nt":  # Windows opens no directory; its renames are journalled by NTFS
        _flush_to_disk(os.path.dirname(os.path.abspath(path)))  # the rename itself


def _flush_to_disk(path):
    """fsync ``path`` (a file, or a directory for the names it holds), so a rename never
    publishes a file whose bytes a crash of the machine, not only of the run, could lose."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_json_atomically(path, data):
    """``data`` as indented JSON at ``path`` (its folder made if missing), written whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as temporary:
        Path(temporary).write_text(json.dumps(data, indent=2))


READ_CHUNK_BYTES = 2**20  # how much of a file is read at once when it is hashed


def files_sha256(paths):
    """The sha256 (hex) of the files' bytes, in the order given: a file named by its content."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(READ_CHUNK_BYTES), b""):
                digest.update(chunk)
    return digest.hexdigest()
