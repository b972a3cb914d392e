"""Convert the common sequential-recommendation text format to RecBole atomic files.

Input (Beauty.txt, Sports_and_Outdoors.txt, Toys_and_Games.txt, Yelp.txt, ...): one user
per line, ``user item item ...``, whitespace-separated, items in time order. Optionally a
json file ``{item: [attribute, ...]}`` (e.g. ``Beauty_item2attributes.json``).

Output in ``OUTPUT/NAME/`` (so that ``--data_path=OUTPUT --dataset=NAME`` finds it):

- ``NAME.inter``: ``user_id:token  item_id:token  timestamp:float``; the timestamp is the
  item's 1-based position in the user's line, so RecBole's time ordering (``order: TO``)
  and leave-one-out split reproduce the sequence order.
- ``NAME.item`` (with an attributes file): ``item_id:token  categories:token_seq``.

The command line is ``convert_dataset.py`` at the top of the checkout.
"""

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from recbole_llmd4rec.atomic import replacing
from recbole_llmd4rec.errors import LLMD4RecError

INTER_HEADER = ("user_id:token", "item_id:token", "timestamp:float")
ITEM_HEADER = ("item_id:token", "categories:token_seq")


@dataclass
class ConversionSummary:
    users: int
    items: int
    interactions: int
    inter_file: Path
    item_file: Path = None

    def __str__(self):
        text = (
            f"{self.users:,} users, {self.items:,} items, {self.interactions:,} interactions "
            f"-> {self.inter_file}"
        )
        return text + (f", {self.item_file}" if self.item_file else "")


def read_sequences(path):
    """Return ``[(user, [item, ...]), ...]`` in file order; blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise LLMD4RecError(f"input file not found: {path}")
    sequences, seen_users = [], {}
    with open(path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            try:
                # utf-8-sig: a byte-order mark (Windows editors write one) is not part of the first user id.
                tokens = raw.decode("utf-8-sig" if line_number == 1 else "utf-8").split()
            except UnicodeDecodeError:
                raise LLMD4RecError(f"{path}:{line_number}: not UTF-8 text") from None
            if not tokens:
                continue
            if len(tokens) < 2:
                raise LLMD4RecError(
                    f"{path}:{line_number}: user '{tokens[0]}' has no items; "
                    "each line must be `user item item ...`"
                )
            user = tokens[0]
            if user in seen_users:
                raise LLMD4RecError(
                    f"{path}:{line_number}: user '{user}' already has a line ({seen_users[user]}); "
                    "each user must be on one line"
                )
            seen_users[user] = line_number
            sequences.append((user, tokens[1:]))
    if not sequences:
        raise LLMD4RecError(f"{path}: no sequences found; expected lines `user item item ...`")
    return sequences


def read_attributes(path):
    """Return ``{item: [attribute token, ...]}`` from a json object of lists."""
    path = Path(path)
    if not path.is_file():
        raise LLMD4RecError(f"attributes file not found: {path}")
    try:
        with open(path, encoding="utf-8-sig") as handle:
            raw = json.load(handle)
    except json.JSONDecodeError as exc:
        raise LLMD4RecError(f"{path}:{exc.lineno}: not valid json ({exc.msg})") from None
    except UnicodeDecodeError:
        raise LLMD4RecError(f"{path}: not UTF-8 text") from None
    if not isinstance(raw, dict):
        raise LLMD4RecError(f"{path}: expected a json object {{item: [attributes]}}")
    attributes = {}
    for item, values in raw.items():
        if not isinstance(values, list):
            raise LLMD4RecError(f"{path}: item '{item}' must map to a list of attributes, got {values!r}")
        tokens = [str(value) for value in values]
        if any(not token or any(ch.isspace() for ch in token) for token in tokens):
            raise LLMD4RecError(f"{path}: item '{item}' has an empty attribute or one with whitespace")
        attributes[str(item)] = tokens
    return attributes


def check_attribute_items(attributes, items, attributes_path, input_path):
    """Refuse an attributes file none of whose item ids is an item of the sequences, and warn
    (one stderr line) when most are not: such a file is most likely another data set's, or
    numbers the items differently, and S3Rec would pre-train on attributes of the wrong items."""
    unknown = sum(1 for item in attributes if item not in items)
    if attributes and unknown == len(attributes):
        raise LLMD4RecError(
            f"none of the {len(attributes):,} item ids in {attributes_path} is an item of {input_path}: "
            "give the attributes file of this data set, its ids written as in the sequence file"
        )
    if unknown > len(attributes) / 2:
        described = sum(1 for item in items if item in attributes)
        print(
            f"warning: {unknown:,} of the {len(attributes):,} item ids in {attributes_path} are not items of "
            f"{input_path}, so their attributes are dropped ({described:,} of the {len(items):,} items get "
            "categories): check that both files come from the same data set",
            file=sys.stderr,
        )


def _write_atomically(path, header, rows):
    """Write a tab-separated atomic file whole (atomic.replacing: a temporary file, then a rename)."""
    with replacing(path) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        handle.write("\t".join(header) + "\n")
        for row in rows:
            handle.write("\t".join(row) + "\n")


def convert(input_path, name, output_dir, attributes_path=None, force=False):
    """Convert one sequence file; returns a :class:`ConversionSummary`."""
    if not name or any(ch in name for ch in "/\\") or name.startswith("."):
        raise LLMD4RecError(f"--name must be a plain data set name such as 'beauty', got {name!r}")
    sequences = read_sequences(input_path)
    attributes = read_attributes(attributes_path) if attributes_path else None
    items_in_order = list(dict.fromkeys(item for _, items in sequences for item in items))
    if attributes is not None:
        check_attribute_items(attributes, set(items_in_order), attributes_path, input_path)

    dataset_dir = Path(output_dir) / name
    inter_file = dataset_dir / f"{name}.inter"
    item_file = dataset_dir / f"{name}.item" if attributes is not None else None
    existing = [path for path in (inter_file, item_file) if path is not None and path.exists()]
    if existing and not force:
        raise LLMD4RecError(f"{existing[0]} already exists; pass --force to overwrite it")
    try:
        dataset_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise LLMD4RecError(f"cannot make the folder {dataset_dir}: a file stands in its path; "
                            "give --output a folder") from None

    _write_atomically(
        inter_file,
        INTER_HEADER,
        ((user, item, f"{position}.0") for user, items in sequences for position, item in enumerate(items, start=1)),
    )
    if item_file is not None:
        _write_atomically(item_file, ITEM_HEADER, ((item, " ".join(attributes.get(item, []))) for item in items_in_order))
    return ConversionSummary(
        users=len(sequences),
        items=len(items_in_order),
        interactions=sum(len(items) for _, items in sequences),
        inter_file=inter_file,
        item_file=item_file,
    )

