"""Config layering and the checks on config values."""

from pathlib import Path

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


# ---- keys no layer knows ---------------------------------------------------------------------
KEY_LOGGER = "recbole_llmd4rec.config"
SHIPPED_MODELS = ["SASRec", "SASRecD", "E4SRec", "LLMD4Rec", "GRU4Rec", "S3Rec"]
SASREC_ARCHITECTURE = ("n_layers", "n_heads", "inner_size")  # tiny.yaml's, which GRU4Rec and E4SRec lack


def _tiny_files(model, tiny, tmp_path):
    """The tiny data set's yaml as ``model``'s user file: without SASRec's architecture keys
    for the models that have no such keys (they would rightly be flagged there)."""
    if model not in ("GRU4Rec", "E4SRec"):
        return list(tiny["config_file_list"])
    protocol = yaml.safe_load(Path(tiny["config_file_list"][0]).read_text(encoding="utf-8"))
    (tmp_path / "protocol.yaml").write_text(yaml.safe_dump(
        {key: value for key, value in protocol.items() if key not in SASREC_ARCHITECTURE}))
    return [str(tmp_path / "protocol.yaml")]


def _key_warnings(caplog):
    return [record.getMessage() for record in caplog.records if record.name == KEY_LOGGER]


@pytest.mark.parametrize("layer", ["config_file", "config_dict", "cmd"])
def test_an_unknown_key_warns_once_naming_the_closest_key(tiny, tmp_path, caplog, layer):
    file = tmp_path / "user.yaml"
    file.write_text("lerning_rate: 0.01\n")
    files = tiny["config_file_list"] + ([str(file)] if layer == "config_file" else [])
    config_dict = {**tiny["config_dict"], **({"lerning_rate": 0.01} if layer == "config_dict" else {})}
    cmd_args = ["--lerning_rate=0.01"] if layer == "cmd" else []
    with caplog.at_level("WARNING", logger=KEY_LOGGER):
        Config("SASRec", tiny["dataset"], files, config_dict, cmd_args)
    assert _key_warnings(caplog) == ["unknown config key 'lerning_rate' (ignored); did you mean 'learning_rate'?"]


def test_the_closest_key_is_found_in_any_case(tiny, caplog):
    with caplog.at_level("WARNING", logger=KEY_LOGGER):
        Config("SASRec", **tiny, cmd_args=["--max_item_list_length=20"])
    assert _key_warnings(caplog) == [
        "unknown config key 'max_item_list_length' (ignored); did you mean 'MAX_ITEM_LIST_LENGTH'?"]


@pytest.mark.parametrize("model, hint", [("LLMD4Rec", "did you mean 'distill_temperature' in the llm: section?"),
                                         ("E4SRec", "did you mean 'distill_temperature'?"), ("SASRec", None)])
def test_a_paper_symbol_points_to_its_key(tiny, tmp_path, caplog, model, hint):
    with caplog.at_level("WARNING", logger=KEY_LOGGER):
        Config(model, "tiny", _tiny_files(model, tiny, tmp_path), tiny["config_dict"], ["--T1=0"])
    assert _key_warnings(caplog) == ["unknown config key 'T1' (ignored)" + (f"; {hint}" if hint else "")]


def test_strict_keys_refuses_unknown_keys_in_one_line(tiny, caplog):
    with caplog.at_level("WARNING", logger=KEY_LOGGER), pytest.raises(ConfigError) as refused:
        Config("SASRec", **tiny, cmd_args=["--strict_keys=True", "--lerning_rate=0.01", "--zzz=1"])
    assert str(refused.value) == ("unknown config keys 'lerning_rate' (did you mean 'learning_rate'?), 'zzz': "
                                  "fix or remove them (strict_keys refuses keys that no layer of the model knows)")
    assert not _key_warnings(caplog)
    Config("SASRec", **tiny, cmd_args=["--strict_keys=True", "--learning_rate=0.01"])


def test_a_parts_key_is_a_key_of_llmd4rec_and_sections_are_checked_against_their_part(tiny, caplog):
    given = ["--distill_beta=0.4", "--lora_r=4", "--mutual_rounds=1",  # SASRecD's, E4SRec's, LLMD4Rec's own
             "--crm={'lerning_rate': 0.01, 'lora_r': 4}", "--llm={'distill_temperature': 0.5}"]
    with caplog.at_level("WARNING", logger=KEY_LOGGER):
        config = Config("LLMD4Rec", **tiny, cmd_args=given)
        assert _key_warnings(caplog) == [
            "unknown config key 'lerning_rate' in the crm: section (ignored); did you mean 'learning_rate'?",
            "unknown config key 'lora_r' in the crm: section (ignored); did you mean 'lora_r' in the llm: section?"]
        caplog.clear()
        # each part sees every key the user gave, the other part's and LLMD4Rec's too: not flagged there
        config.for_model("SASRecD", config["crm"])
        config.for_model("E4SRec", config["llm"])
    assert _key_warnings(caplog) == []


def test_keys_recbole_takes_without_a_default_are_not_flagged(tiny, tmp_path, caplog):
    run = tmp_path / "run.yaml"
    run.write_text("model: SASRec\ndataset: tiny\nencoding: utf-8\n")  # RecBole reads model and dataset from files too
    with caplog.at_level("WARNING", logger=KEY_LOGGER):
        config = Config(None, None, tiny["config_file_list"] + [str(run)], tiny["config_dict"])
    assert config.model == "SASRec" and _key_warnings(caplog) == []


def _documented_runs():
    """(model, [--key=value, ...]) of every `python run_llmd4rec.py` command in README.md and
    docs/; a comparison's overrides reach every model. Script options and the data set are left out."""
    import re

    from conftest import REPO
    from run_llmd4rec import COMPARE_OPTIONS

    script_only = {"model", "dataset", "data_path", "config_files", "compare", *COMPARE_OPTIONS}
    runs = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = page.read_text(encoding="utf-8").replace("\\\n", " ")
        for command in re.findall(r"python run_llmd4rec\.py([^`\n]*)", text):
            args = re.findall(r"--(\w+)=(\S+)", command)
            named = dict(args).get("model", "LLMD4Rec")
            overrides = tuple(f"--{key}={value}" for key, value in args if key not in script_only)
            runs += [(model, overrides) for model in (SHIPPED_MODELS if "--compare" in command else [named])]
    return list(dict.fromkeys(runs))


def _documented_settings():
    """The keys of the settings the docs name in passing, `key: value` or `--key=value`:
    LLMD4Rec's and its parts', and S3Rec's."""
    import re

    from conftest import REPO
    from run_llmd4rec import COMPARE_OPTIONS

    text = "".join(page.read_text(encoding="utf-8") for page in [REPO / "README.md", *(REPO / "docs").glob("*.md")])
    keys = set(re.findall(r"`(\w+): [^`]*`", text)) | set(re.findall(r"--(\w+)=", text))
    return keys - {"key", "model", "dataset", "data_path", "config_files", *COMPARE_OPTIONS}


@pytest.mark.parametrize("model", SHIPPED_MODELS)
def test_no_shipped_or_documented_key_is_flagged(tiny, tmp_path, caplog, model):
    """Every key of the plugin's yaml files, the docs' commands and settings, given by the user."""
    from recbole_llmd4rec.config import DATASET_CONFIG_DIR, PROPERTIES_DIR
    from recbole_llmd4rec.utils import get_model

    files = _tiny_files(model, tiny, tmp_path)
    models = [model, *getattr(get_model(model), "PARTS", {}).values()]
    shipped = [PROPERTIES_DIR / "overall.yaml", PROPERTIES_DIR / "main_job.yaml",
               *(PROPERTIES_DIR / "model" / f"{name}.yaml" for name in models), *DATASET_CONFIG_DIR.glob("*.yaml")]
    keys = {key for path in shipped if path.is_file() for key in yaml.safe_load(path.read_text(encoding="utf-8"))}
    if model == "LLMD4Rec":  # S3Rec's documented keys are in its yaml, tested with S3Rec
        s3rec_keys = yaml.safe_load((PROPERTIES_DIR / "model" / "S3Rec.yaml").read_text(encoding="utf-8"))
        keys |= _documented_settings() - set(s3rec_keys)
    # the values the model gets from its layers, so only the keys are on trial (an unknown key gets None)
    baseline = Config(model, "tiny", files, tiny["config_dict"])
    defaults = {**baseline.internal_config_dict}
    for part in models[1:]:
        defaults.update(baseline.for_model(part).internal_config_dict)
    config_dict = {**tiny["config_dict"], **{key: defaults.get(key) for key in keys}}
    runs = [overrides for run_model, overrides in _documented_runs() if run_model == model]
    assert keys and runs
    with caplog.at_level("WARNING", logger=KEY_LOGGER):
        for overrides in runs:
            Config(model, "tiny", files, config_dict, overrides)
    assert _key_warnings(caplog) == []


def test_the_documented_runs_are_found():
    runs = _documented_runs()
    assert {model for model, _ in runs} == set(SHIPPED_MODELS)
    assert ("SASRec", ("--topk=[5,10]", "--learning_rate=1e-3")) in runs
    assert {"teacher_store", "crm", "llm_gguf_file", "finetune_after_pretrain"} <= _documented_settings()


def test_the_data_set_yamls_keep_one_protocol():
    """The Amazon and Yelp yamls are the protocol of converted.yaml (each kept as a file of its own,
    since a comparison record's identity hashes each file's values); ml-100k's differs only in the
    columns it loads. A value edited in one of them and not in the others fails here."""
    import yaml

    from recbole_llmd4rec.config import CONVERTED_DATASET_CONFIG, DATASET_CONFIG_DIR

    def values(name):
        return yaml.safe_load((DATASET_CONFIG_DIR / name).read_text(encoding="utf-8"))

    protocol = values(CONVERTED_DATASET_CONFIG)
    for name in ("beauty.yaml", "sports.yaml", "toys.yaml", "yelp.yaml"):
        assert values(name) == protocol, name
    movielens = values("ml-100k.yaml")
    assert set(movielens) ^ set(protocol) == {"item_attribute"}
    differing = {key for key in movielens if movielens[key] != protocol[key]}
    assert differing == {"load_col"}
