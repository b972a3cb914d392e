"""One epoch of RecBole baselines through run_llmd4rec, checkpoint reload, clear errors."""

import pytest
import torch
from recbole.trainer import Trainer

from conftest import TESTS, run_script
from recbole_llmd4rec import load_data_and_model, run_llmd4rec
from recbole_llmd4rec.errors import ConfigError, DatasetNotFoundError, LLMD4RecError, first_reason

METRICS = {"hit@5", "hit@10", "ndcg@5", "ndcg@10"}


def _check_result(result):
    assert set(result["test_result"]) == METRICS
    assert all(0.0 <= value <= 1.0 for value in result["test_result"].values())
    # NDCG@k never exceeds HR@k for a single relevant item.
    assert result["test_result"]["ndcg@10"] <= result["test_result"]["hit@10"]
    assert result["best_valid_score"] == result["best_valid_result"]["ndcg@10"]


@pytest.mark.parametrize("model", ["SASRec", "GRU4Rec", "SASRecD"])
def test_one_epoch_of_a_recbole_model(tiny, model):
    result = run_llmd4rec(model=model, **tiny)
    _check_result(result)


def test_s3rec_pretrains_then_finetunes(tiny, workdir):
    result = run_llmd4rec(model="S3Rec", **tiny, cmd_args=["--pretrain_epochs=1"])
    _check_result(result)
    assert (workdir / "saved" / "S3Rec-tiny-1.pth").is_file()  # the pre-trained stage


def test_best_model_reload_reproduces_the_test_result(tiny):
    result = run_llmd4rec(model="SASRec", **tiny, cmd_args=["--epochs=2"])
    config, model, dataset, train_data, valid_data, test_data = load_data_and_model(result["saved_model_file"])
    assert config["model"] == "SASRec" and config["dataset"] == "tiny"
    reloaded = Trainer(config, model).evaluate(test_data, load_best_model=False)
    assert dict(reloaded) == dict(result["test_result"])


def test_recbole_resume_checkpoint_reads_the_plugin_checkpoint(tiny):
    from recbole_llmd4rec import Config
    from recbole_llmd4rec.quick_start import load_dataset
    from recbole_llmd4rec.utils import get_model

    result = run_llmd4rec(model="SASRec", **tiny)
    config = Config("SASRec", **tiny, cmd_args=["--epochs=2"])
    _, train_data, _, _ = load_dataset(config)
    trainer = Trainer(config, get_model("SASRec")(config, train_data._dataset))
    trainer.resume_checkpoint(result["saved_model_file"])
    assert trainer.start_epoch == 1


def test_missing_dataset_says_where_it_looked_and_how_to_convert(tiny, tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"nothere\.inter.*python convert_dataset\.py --input FILE\.txt --name nothere"):
        run_llmd4rec(model="SASRec", dataset="nothere", config_file_list=tiny["config_file_list"],
                     config_dict={"data_path": str(tmp_path)})


HEADER = "user_id:token\titem_id:token\ttimestamp:float\n"


@pytest.mark.parametrize("content, message", [
    ("", r"broken\.inter is empty: it needs a header"),
    ("user item\n1 2\n", r"header column 'user item' is not name:type"),
    ("user_id:token\titem_id:token\n1\t2\n", r"has no column 'timestamp' .*which load_col names"),
    (HEADER, "holds no interactions below its header"),
    (HEADER + "1\t2\n1\t3\t4\t9\t9\n1\n2\t2\t1\n", "could not load data set 'broken'"),  # rows of other widths
    (HEADER + "1\t2\t1\n1\t3\t2\n2\t2\t1\n", "leaves the valid split empty"),  # no user with 3 items
])
def test_malformed_atomic_file_is_a_clear_error(tiny, tmp_path, content, message):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "broken.inter").write_text(content)
    with pytest.raises(LLMD4RecError, match=message):
        run_llmd4rec(model="SASRec", dataset="broken", config_file_list=tiny["config_file_list"],
                     config_dict={"data_path": str(tmp_path)})


def test_a_model_the_data_set_lacks_a_field_for_is_a_clear_error(tiny, tmp_path):
    import shutil

    shutil.copytree(TESTS / "data" / "tiny", tmp_path / "tiny", ignore=shutil.ignore_patterns("*.item"))
    with pytest.raises(LLMD4RecError, match=r"S3Rec cannot be built on data set 'tiny': Field \[categories\]"):
        run_llmd4rec(model="S3Rec", dataset="tiny", config_file_list=tiny["config_file_list"],
                     config_dict={"data_path": str(tmp_path)})


def test_mismatched_checkpoint_is_a_clear_error(tiny, tmp_path):
    result = run_llmd4rec(model="SASRec", **tiny)
    checkpoint = torch.load(result["saved_model_file"])
    checkpoint["state_dict"]["item_embedding.weight"] = torch.zeros(3, 16)
    broken = tmp_path / "mismatch.pth"
    torch.save(checkpoint, broken)
    with pytest.raises(LLMD4RecError, match=r"does not match model SASRec .*: size mismatch for item_embedding\.weight"):
        load_data_and_model(str(broken))
    with pytest.raises(LLMD4RecError, match="checkpoint not found"):
        load_data_and_model(str(tmp_path / "absent.pth"))
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(LLMD4RecError, match=r"cannot read checkpoint .*garbage\.pth .*not a whole file written by torch\.save, and a RecBole checkpoint was expected"):
        load_data_and_model(str(tmp_path / "garbage.pth"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model=NoSuchModel"], "unknown model 'NoSuchModel'"),
        (["--dataset=nothere", "--data_path=/nonexistent"], "data set 'nothere' not found"),
        (["--dataset=ml-100k", "--data_path=/nonexistent"], "drop --data_path to use the copy that ships inside"),
        (["--compare", "--dataset=ml-100k", "--mutual_rounds=3"], "--mutual_rounds cannot go to a comparison"),
        (["--epochs=abc"], "config key 'epochs' takes a int"),
        (["stray"], "cannot read argument 'stray'"),
    ],
)
def test_run_script_bad_input_is_one_error_line(workdir, args, message):
    completed = run_script(*args, cwd=workdir, timeout=300)
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [completed.stderr.strip()]
    assert completed.stderr.startswith("error: ") and message in completed.stderr


def test_a_config_key_that_starts_like_a_script_option_reaches_the_config():
    import run_llmd4rec as run_script_module

    args, overrides = run_script_module.parse_args(["--compare", "--seed=2021", "--method=x"])
    assert args.seeds is None and args.methods is None
    assert overrides == ["--seed=2021", "--method=x"]


def test_first_reason_skips_torchs_heading_and_keeps_other_errors_first_line():
    with pytest.raises(RuntimeError) as mismatch:
        torch.nn.Linear(2, 3).load_state_dict({"weight": torch.zeros(4, 2), "bias": torch.zeros(3)})
    assert first_reason(mismatch.value).startswith("size mismatch for weight: copying a param with shape")
    assert first_reason(ValueError("loaded state dict has a different number of groups\nmore")) == \
        "loaded state dict has a different number of groups"
    assert first_reason(KeyError()) == "KeyError"


@pytest.mark.parametrize("model, overrides, message", [
    ("LLMD4Rec", {"llm": {"distill_temperature": 0}}, r"E4SRec's distill_temperature \(T1, .*\) must be > 0"),
    ("LLMD4Rec", {"mutual_rounds": 0}, "mutual_rounds must be an int >= 1"),
    ("LLMD4Rec", {"directions": "sideways"}, "directions must be one of both, crm_to_llm, llm_to_crm"),
    ("SASRecD", {"distill_temperature": 0}, r"SASRecD's distill_temperature \(T2, .*\) must be > 0"),
    ("E4SRec", {"micro_batch_size": 0}, "micro_batch_size must be an int >= 1"),
])
def test_the_plugins_own_settings_are_refused_before_the_data_set_loads(tiny, monkeypatch, model, overrides, message):
    import recbole_llmd4rec.quick_start as quick_start

    monkeypatch.setattr(quick_start, "load_dataset", lambda config: pytest.fail("the data set was loaded"))
    with pytest.raises(ConfigError, match=message):
        run_llmd4rec(model, "tiny", tiny["config_file_list"], {**tiny["config_dict"], **overrides})
