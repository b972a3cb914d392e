"""The sequence-file converter: round trip through RecBole, errors with line numbers."""

import json

import pytest

from conftest import SHARED_DATASETS
from recbole_llmd4rec import Config
from convert_dataset import main
from recbole_llmd4rec.data.convert import convert
from recbole_llmd4rec.errors import LLMD4RecError
from recbole.data import create_dataset, data_preparation

from recbole_llmd4rec.quick_start import check_dataset_files

SEQUENCES = {"7": ["3", "1", "4", "1", "5"], "2": ["9", "2", "6", "5", "3", "5"], "11": ["8", "9", "7", "9"]}


def _write_sequences(path, sequences=SEQUENCES, blank_lines=False):
    lines = [" ".join([user, *items]) for user, items in sequences.items()]
    path.write_text(("\n\n" if blank_lines else "\n").join(lines) + "\n")
    return path


def _recbole_dataset(data_path, name, *extra):
    config = Config(
        "SASRec", name,
        config_dict={"data_path": str(data_path), "state": "WARNING", "MAX_ITEM_LIST_LENGTH": 50,
                     "load_col": {"inter": ["user_id", "item_id", "timestamp"]}},
        cmd_args=list(extra),
    )
    check_dataset_files(config)
    return create_dataset(config)


def test_round_trip_keeps_every_sequence_in_order(workdir):
    source = _write_sequences(workdir / "seq.txt", blank_lines=True)
    summary = convert(source, "toy", workdir / "out")
    assert (summary.users, summary.items, summary.interactions) == (3, 9, 15)

    rows = [line.split("\t") for line in summary.inter_file.read_text().splitlines()]
    assert rows[0] == ["user_id:token", "item_id:token", "timestamp:float"]
    rebuilt = {}
    for user, item, timestamp in rows[1:]:
        rebuilt.setdefault(user, []).append((float(timestamp), item))
    assert {user: [item for _, item in sorted(pairs)] for user, pairs in rebuilt.items()} == SEQUENCES

    dataset = _recbole_dataset(workdir / "out", "toy")
    assert dataset.user_num - 1 == 3 and dataset.item_num - 1 == 9 and dataset.inter_num == 15
    _, _, test_data = data_preparation(dataset.config, dataset)
    # Leave-one-out in time order: each user's last item is the test target.
    test_targets = {
        dataset.id2token("user_id", int(u)): dataset.id2token("item_id", int(i))
        for u, i in zip(test_data.dataset.inter_feat["user_id"], test_data.dataset.inter_feat["item_id"])
    }
    assert test_targets == {user: items[-1] for user, items in SEQUENCES.items()}


def test_attributes_become_an_item_file(workdir):
    source = _write_sequences(workdir / "seq.txt")
    attributes = workdir / "attrs.json"
    attributes.write_text(json.dumps({"3": [1, 2], "9": [4]}))
    summary = convert(source, "toy", workdir / "out", attributes)
    rows = dict(line.split("\t") for line in summary.item_file.read_text().splitlines())
    assert rows["item_id:token"] == "categories:token_seq"
    assert rows["3"] == "1 2" and rows["9"] == "4" and rows["1"] == ""


@pytest.mark.parametrize(
    "content, message",
    [
        ("1 2 3\n4\n", r"seq\.txt:2: user '4' has no items"),
        ("1 2 3\n5 6\n1 7\n", r"seq\.txt:3: user '1' already has a line \(1\)"),
        ("", "no sequences found"),
    ],
)
def test_malformed_sequence_file_names_the_line(workdir, content, message):
    (workdir / "seq.txt").write_text(content)
    with pytest.raises(LLMD4RecError, match=message):
        convert(workdir / "seq.txt", "toy", workdir / "out")


def test_non_utf8_line_is_named(workdir):
    (workdir / "seq.txt").write_bytes(b"1 2 3\n2 \xff 4\n")
    with pytest.raises(LLMD4RecError, match=r"seq\.txt:2: not UTF-8"):
        convert(workdir / "seq.txt", "toy", workdir / "out")


def test_malformed_attributes_file(workdir):
    source = _write_sequences(workdir / "seq.txt")
    (workdir / "attrs.json").write_text('{"3": [1,\n 2,\n')
    with pytest.raises(LLMD4RecError, match=r"attrs\.json:3: not valid json"):
        convert(source, "toy", workdir / "out", workdir / "attrs.json")
    (workdir / "attrs.json").write_text('{"3": 5}')
    with pytest.raises(LLMD4RecError, match="must map to a list"):
        convert(source, "toy", workdir / "out", workdir / "attrs.json")


def test_existing_output_is_kept_unless_forced(workdir, capsys):
    source = _write_sequences(workdir / "seq.txt")
    summary = convert(source, "toy", workdir / "out")
    summary.inter_file.write_text("finished work\n")
    args = ["--input", str(source), "--name", "toy", "--output", str(workdir / "out")]
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == f"error: {summary.inter_file} already exists; pass --force to overwrite it"
    assert summary.inter_file.read_text() == "finished work\n"
    assert main(args + ["--force"]) == 0
    assert "3 users, 9 items, 15 interactions" in capsys.readouterr().out


def test_missing_input_and_bad_name(workdir, capsys):
    assert main(["--input", "absent.txt", "--name", "toy", "--output", "out"]) == 2
    assert capsys.readouterr().err.strip() == "error: input file not found: absent.txt"
    _write_sequences(workdir / "seq.txt")
    with pytest.raises(LLMD4RecError, match="plain data set name"):
        convert(workdir / "seq.txt", "../escape", workdir / "out")
    (workdir / "afile").write_text("")
    with pytest.raises(LLMD4RecError, match="a file stands in its path; give --output a folder"):
        convert(workdir / "seq.txt", "toy", workdir / "afile")


def test_a_byte_order_mark_is_not_part_of_the_first_user(workdir):
    (workdir / "seq.txt").write_bytes("\ufeff1 2 3\n4 3 5\n".encode("utf-8"))
    (workdir / "attrs.json").write_bytes('\ufeff{"2": ["a"], "3": ["b"]}'.encode("utf-8"))
    summary = convert(workdir / "seq.txt", "toy", workdir / "out", workdir / "attrs.json")
    users = [line.split("\t")[0] for line in summary.inter_file.read_text(encoding="utf-8").splitlines()[1:]]
    assert users == ["1", "1", "4", "4"]
    assert "2\ta" in summary.item_file.read_text(encoding="utf-8").splitlines()


def _attributes(workdir, item_ids):
    (workdir / "attrs.json").write_text(json.dumps({item: ["a"] for item in item_ids}))
    return workdir / "attrs.json"


def test_attributes_of_mostly_other_items_get_one_warning_line(workdir, capsys):
    source = _write_sequences(workdir / "seq.txt")  # items 1-9
    summary = convert(source, "toy", workdir / "out", _attributes(workdir, ["3", "101", "102"]))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        f"warning: 2 of the 3 item ids in {workdir / 'attrs.json'} are not items of {source}, so their attributes "
        "are dropped (1 of the 9 items get categories): check that both files come from the same data set")
    assert summary.item_file.is_file()
    convert(source, "toy", workdir / "out", _attributes(workdir, ["3", "4", "101", "102"]), force=True)
    assert capsys.readouterr().err == ""  # half unknown: no warning


def test_attributes_of_no_item_of_the_data_set_are_refused(workdir, capsys):
    source = _write_sequences(workdir / "seq.txt")
    args = ["--input", str(source), "--name", "toy", "--output", str(workdir / "out"),
            "--attributes", str(_attributes(workdir, ["item_3", "item_9"]))]
    assert main(args) == 2
    assert capsys.readouterr().err == (
        f"error: none of the 2 item ids in {workdir / 'attrs.json'} is an item of {source}: give the attributes "
        "file of this data set, its ids written as in the sequence file\n")
    assert not (workdir / "out").exists()


BEAUTY = SHARED_DATASETS / "Beauty" / "Beauty.txt"


@pytest.mark.skipif(not BEAUTY.is_file(), reason=f"shared data set not present at {BEAUTY}")
def test_beauty_converts_to_the_papers_statistics(workdir):
    summary = convert(BEAUTY, "beauty", workdir / "out", BEAUTY.with_name("Beauty_item2attributes.json"))
    assert (summary.users, summary.items, summary.interactions) == (22363, 12101, 198502)
    dataset = _recbole_dataset(workdir / "out", "beauty")
    # RecBole counts the padding id 0 in user_num and item_num.
    assert (dataset.user_num - 1, dataset.item_num - 1, dataset.inter_num) == (22363, 12101, 198502)
