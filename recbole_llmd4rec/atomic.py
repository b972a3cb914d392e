"""Files written whole or not at all, and checkpoints read safely: a killed run (or a crashed
machine) never leaves half a checkpoint or table, and a checkpoint is read through the allow-list
unpickler (compat.py), with one clear error for anything else. Every writer and reader of the
plugin goes through here."""

import hashlib
import json
import os
import shutil
from contextlib import contextmanager, suppress
from pathlib import Path

from recbole_llmd4rec.compat import RefusedCheckpointContent
from recbole_llmd4rec.errors import LLMD4RecError


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


PREVIOUS_FOLDER_SUFFIX = ".previous"  # an earlier version of a folder, while replacing_folder swaps it


@contextmanager
def replacing_folder(path, keep_existing=False):
    """Yield a temporary folder path beside ``path`` to fill; when the block ends without error the
    folder takes ``path``'s place, when it fails it is removed. A folder cannot be renamed over one
    that holds files, so an existing ``path`` is renamed aside to ``<path>.previous`` first and
    removed after the swap: a crash between the two renames leaves the earlier version whole there.
    With ``keep_existing``, a ``path`` that exists when the block ends (another process of the
    same cache made it first) is kept and the temporary folder removed."""
    path = Path(path)
    temporary = path.with_name(f"{path.name}.tmp{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        yield temporary
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    if not temporary.is_dir():  # a writer that wrote nothing must not cost the folder already there
        raise LLMD4RecError(f"nothing was written for {path}: the temporary folder {temporary} was not made")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not keep_existing:
        previous = path.with_name(path.name + PREVIOUS_FOLDER_SUFFIX)
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(path, previous)
        try:
            os.replace(temporary, path)
        except OSError:
            os.replace(previous, path)  # the earlier version back in its place
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        shutil.rmtree(previous)
        return
    try:
        os.replace(temporary, path)
    except OSError:
        shutil.rmtree(temporary, ignore_errors=True)
        if not (keep_existing and path.exists()):
            raise


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


def atomic_torch_save(obj, path):
    """``torch.save`` to a temporary file, then rename: a killed run never leaves half a file."""
    import torch

    path = str(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with replacing(path) as temporary:
        torch.save(obj, temporary)
    return path


def load_checkpoint(model_file, required_keys=("config", "state_dict"), kind="a RecBole checkpoint"):
    """``torch.load`` a checkpoint through the allow-list reader (see compat), checking that it
    is a dict holding ``required_keys``; any failure is one clear LLMD4RecError."""
    import torch

    model_file = str(model_file)
    if not os.path.isfile(model_file):
        raise LLMD4RecError(f"checkpoint not found: {model_file}")
    try:
        checkpoint = torch.load(model_file, map_location="cpu")
    except RefusedCheckpointContent as exc:
        raise LLMD4RecError(
            f"checkpoint {model_file} was refused: {exc}; such content could run code when loaded, so only what "
            f"RecBole and this plugin write is read (expected here: {kind})"
        ) from None
    except Exception as exc:  # torch raises several unrelated types for a bad file
        raise LLMD4RecError(
            f"cannot read checkpoint {model_file} ({type(exc).__name__}: {str(exc).splitlines()[0]}): "
            f"it is not a whole file written by torch.save, and {kind} was expected here"
        ) from None
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in required_keys):
        raise LLMD4RecError(f"{model_file} is not {kind} (it lacks {', '.join(map(repr, required_keys))})")
    return checkpoint


def copy_atomically(source, target):
    """``source`` copied to ``target``, which appears whole or not at all."""
    with replacing(target) as temporary:
        shutil.copyfile(source, temporary)
    return target


def dataset_identity(dataset):
    """What a checkpoint says about the data set it was trained on: its name and the sha256 of its
    item tokens in id order (a model's item ids mean nothing on a data set whose tokens differ)."""
    tokens = dataset.field2id_token[dataset.iid_field]
    return {"dataset": dataset.dataset_name, "items_sha256": hashlib.sha256("\n".join(map(str, tokens)).encode()).hexdigest()}


def check_dataset_identity(checkpoint, identity, path, what):
    """Refuse a checkpoint trained on another data set: its recorded identity (``other_parameter``),
    or, in a checkpoint written before identities were kept, its config's data set name."""
    recorded = (checkpoint.get("other_parameter") or {}).get("dataset_identity")
    if recorded is None:
        config = checkpoint.get("config")
        name = config["dataset"] if config is not None and "dataset" in config else None
        recorded = {"dataset": name, "items_sha256": identity["items_sha256"]} if name else identity
    if recorded != identity:
        same_name = recorded["dataset"] == identity["dataset"]
        raise LLMD4RecError(
            f"{what} {path} was trained on data set '{recorded['dataset']}'"
            f"{' with other item tokens' if same_name else ''}, not on this '{identity['dataset']}': "
            f"give a checkpoint trained on this data set"
        )
