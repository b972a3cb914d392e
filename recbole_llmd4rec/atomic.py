"""Files written whole or not at all: a killed run never leaves half a checkpoint or table."""

import os
from contextlib import contextmanager, suppress


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
    os.replace(temporary, path)
