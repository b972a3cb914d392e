"""Config layering and the checks on config values."""

import pytest
import yaml

from recbole_llmd4rec import config as config_module
from recbole_llmd4rec.config import Config
from recbole_llmd4rec.errors import ConfigError

LAYERS = ["overall", "model", "dataset", "user_file", "config_dict", "cmd"]


@pytest.fixture
def layered(tmp_path, monkeypatch, tiny):
    """Plugin yaml folders in tmp_path, each file setting `probe` to its layer name."""
    properties = tmp_path / "properties"
    datasets = tmp_path / "dataset_configs"
    (properties / "model").mkdir(parents=True)
    datasets.mkdir()
    monkeypatch.setattr(config_module, "PROPERTIES_DIR", properties)
    monkeypatch.setattr(config_module, "DATASET_CONFIG_DIR", datasets)

    def build(top_layer):
        present = LAYERS[: LAYERS.index(top_layer) + 1]
        files = {
            "overall": properties / "overall.yaml",
            "model": properties / "model" / "SASRec.yaml",
            "dataset": datasets / "tiny.yaml",
            "user_file": tmp_path / "user.yaml",
        }
        for layer, path in files.items():
            if path.exists():
                path.unlink()
            if layer in present:
                path.write_text(yaml.safe_dump({"probe": layer, "learning_rate": 0.005}))
        config_files = list(tiny["config_file_list"])
        if "user_file" in present:
            config_files.append(str(files["user_file"]))
        config_dict = dict(tiny["config_dict"])
        if "config_dict" in present:
            config_dict["probe"] = "config_dict"
        cmd_args = ["--probe=cmd"] if "cmd" in present else []
        return Config("SASRec", "tiny", config_files, config_dict, cmd_args)

    return build


@pytest.mark.parametrize("top_layer", LAYERS)
def test_each_layer_overrides_the_ones_below(layered, top_layer):
    assert layered(top_layer)["probe"] == top_layer


def test_plugin_overall_overrides_recbole_defaults(layered):
    # RecBole's default learning_rate is 0.001; the plugin's overall.yaml here says 0.005.
    assert layered("overall")["learning_rate"] == 0.005


def test_shipped_yaml_files_are_layered(tiny):
    config = Config("S3Rec", "ml-100k", cmd_args=["--epochs=1"])
    assert config["train_batch_size"] == 256  # properties/overall.yaml (RecBole: 2048)
    assert config["finetune_after_pretrain"] is True  # properties/model/S3Rec.yaml
    assert config["valid_metric"] == "NDCG@10"  # dataset_configs/ml-100k.yaml
    assert config["eval_args"]["split"] == {"LS": "valid_and_test"} and config["eval_args"]["order"] == "TO"
    assert config["epochs"] == 1


def test_argv_is_not_read_unless_passed(tiny, monkeypatch):
    monkeypatch.setattr("sys.argv", ["pytest", "--epochs=7"])
    assert Config("SASRec", **tiny)["epochs"] == 1


@pytest.mark.parametrize(
    "override, key",
    [("--epochs=abc", "epochs"), ("--epochs=1.5", "epochs"), ("--show_progress=3", "show_progress"),
     ("--learning_rate=fast", "learning_rate"), ("--eval_args=full", "eval_args")],
)
def test_value_of_the_wrong_type_is_refused(tiny, override, key):
    with pytest.raises(ConfigError, match=f"'{key}' takes a"):
        Config("SASRec", **tiny, cmd_args=[override])


def test_int_is_accepted_for_a_float_key(tiny):
    assert Config("SASRec", **tiny, cmd_args=["--learning_rate=1"])["learning_rate"] == 1


@pytest.mark.parametrize("bad", ["--epochs", "epochs=3", "-e=3"])
def test_malformed_override_is_refused(tiny, bad):
    with pytest.raises(ConfigError, match="--key=value"):
        Config("SASRec", **tiny, cmd_args=[bad])


def test_missing_and_malformed_config_files(tiny, tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        Config("SASRec", "tiny", [str(tmp_path / "nope.yaml")])
    good = tmp_path / "good.yaml"
    good.write_text("epochs: 1\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("epochs: 1\ntopk: [5,\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"config file .*broken\.yaml is not valid yaml at line \d"):
        Config("SASRec", "tiny", [str(good), str(broken)])
    listed = tmp_path / "listed.yaml"
    listed.write_text("- epochs: 1\n")
    with pytest.raises(ConfigError, match=r"listed\.yaml must hold 'key: value' lines, not a list"):
        Config("SASRec", "tiny", [str(listed)])


@pytest.mark.parametrize(
    "override, message",
    [("--epochs=0", "epochs must be an int >= 1, got 0"), ("--train_batch_size=0", "train_batch_size must be"),
     ("--eval_batch_size=-4", "eval_batch_size must be"), ("--stopping_step=-1", "stopping_step must be"),
     ("--learning_rate=-0.1", "learning_rate must be > 0"), ("--learning_rate=0", "learning_rate must be > 0"),
     ("--topk=foo", r"The topk \[foo\] must be"), ("--topk=[0,10]", "topk must be a positive integer"),
     ("--valid_metric=MRR@10", "valid_metric 'MRR@10' is not among what is evaluated"),
     ("--valid_metric=NDCG@50", "valid_metric 'NDCG@50' is not among what is evaluated")],
)
def test_training_settings_recbole_would_fail_on_late_are_refused(tiny, override, message):
    with pytest.raises(ConfigError, match=message):
        Config("SASRec", **tiny, cmd_args=[override])


def test_a_models_own_section_is_checked_too(tiny):
    config = Config("SASRec", **tiny)
    with pytest.raises(ConfigError, match="epochs must be an int >= 1, got 0"):
        config.for_model("SASRec", {"epochs": 0})


def test_a_data_set_without_a_yaml_of_its_own_gets_the_papers_protocol(tiny):
    config = Config("SASRec", "mine", config_dict={"data_path": "somewhere"})
    assert config["load_col"]["inter"] == ["user_id", "item_id", "timestamp"]
    assert config["eval_args"]["split"] == {"LS": "valid_and_test"} and config["eval_args"]["order"] == "TO"
    assert config["valid_metric"] == "NDCG@10"


def test_ml_100k_is_read_from_a_data_path_the_user_gives(tiny):
    import os

    assert Config("SASRec", "ml-100k")["data_path"].endswith(os.path.join("dataset_example", "ml-100k"))
    assert Config("SASRec", "ml-100k", config_dict={"data_path": "mine"})["data_path"] == os.path.join("mine", "ml-100k")


def test_missing_model_or_dataset(tiny):
    with pytest.raises(ConfigError, match="no model"):
        Config(None, "tiny")
    with pytest.raises(ConfigError, match="no data set"):
        Config("SASRec", None)


@pytest.mark.parametrize(
    "override, expected",
    [("--topk=[5,10,20]", [5, 10, 20]), ("--stopping_step=3", 3), ("--show_progress=true", True),
     ("--valid_metric=Hit@5", "Hit@5"), ("--weight_decay=1e-4", 1e-4), ("--gpu_id=0,1", "0,1")],
)
def test_command_line_values_are_read_as_literals(tiny, override, expected):
    key = override[2:].split("=")[0]
    assert Config("SASRec", **tiny, cmd_args=[override])[key] == expected


def test_command_line_values_are_never_evaluated_as_code(tiny):
    config = Config("SASRec", **tiny, cmd_args=["--probe=__import__('os').getcwd()", "--other=config_dict"])
    assert config["probe"] == "__import__('os').getcwd()" and config["other"] == "config_dict"


@pytest.mark.parametrize("value", [0, -1, True, 2.5, "4"])
def test_require_int_refuses_what_is_not_an_int_at_or_above_the_minimum(value):
    from recbole_llmd4rec.config import require_int

    with pytest.raises(ConfigError, match=r"micro_batch_size must be an int >= 1, got"):
        require_int({"micro_batch_size": value}, "micro_batch_size", 1)
    assert require_int({"length_groups": 0}, "length_groups", 0) == 0


TYPE_NAMES = {"bool": bool, "int": int, "float": float, "str": str, "list": list, "dict": dict, "None": type(None)}


def test_every_shipped_default_has_the_type_its_comment_names():
    """`key: value  # (type) meaning`: the comment is what users read, the value is what the
    type check compares their overrides with (an int default refuses 0.5)."""
    import re

    from recbole_llmd4rec.config import PROPERTIES_DIR

    checked = 0
    for path in PROPERTIES_DIR.rglob("*.yaml"):
        for line in path.read_text(encoding="utf-8").splitlines():
            match = re.match(r"\s*(\w+):\s*(.*?)\s*# \(([\w ]+)\)", line)
            if not match:
                continue
            key, text, named = match.groups()
            allowed = tuple(TYPE_NAMES[name] for name in named.split(" or "))
            value = yaml.safe_load(text) if text else {}  # a bare `key:` opens a dict of sub-keys
            assert type(value) in allowed, f"{path.name}: {key}: {value!r} is not ({named})"
            checked += 1
    assert checked >= 50
