"""Config layering for the plugin.

Lowest to highest precedence:
RecBole's defaults < ``properties/overall.yaml`` < ``properties/model/<Model>.yaml``
< ``dataset_configs/<dataset>.yaml`` < user yaml files < ``config_dict`` < command line.

RecBole reads ``sys.argv`` inside ``Config``; here the command-line layer is the list of
``--key=value`` strings the caller passes (the run script passes its own arguments), so a
library caller, a notebook or pytest never has its own argv read as configuration.
"""

import ast
import copy
import difflib
import logging
import os
from pathlib import Path

import recbole
import yaml
from recbole.config import Config as RecBoleConfig

from recbole_llmd4rec import distributed
from recbole_llmd4rec.compat import allow_checkpoint_class
from recbole_llmd4rec.errors import ConfigError
from recbole_llmd4rec.utils import get_model


def _resource_dir(name):
    """``properties`` / ``dataset_configs``: inside the installed package, or in the checkout."""
    package_dir = Path(__file__).resolve().parent
    for candidate in (package_dir / name, package_dir.parent / name):
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"the plugin's '{name}' folder is missing: reinstall with `pip install .`")


BUNDLED_DATASET = "ml-100k"  # the data set that ships inside recbole
PROPERTIES_DIR = _resource_dir("properties")
RECBOLE_MODEL_PROPERTIES = Path(recbole.__file__).parent / "properties" / "model"
DATASET_CONFIG_DIR = _resource_dir("dataset_configs")
CONVERTED_DATASET_CONFIG = "converted.yaml"  # for a data set without a yaml of its own
# What ``crm_loss_type`` sets for a CRM: RecBole's loss_type and its training negatives.
CRM_LOSS_REGIMES = {
    "CE": {"loss_type": "CE", "train_neg_sample_args": None},  # full softmax over all items
    "BPR": {"loss_type": "BPR", "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}},  # the paper's
}


def follows_loss_type(model_class):
    """Whether RecBole derives ``model_class``'s input type from ``loss_type`` (SASRec, GRU4Rec,
    S3Rec, SASRecD, ...): the CRMs ``crm_loss_type`` applies to. E4SRec and LLMD4Rec declare
    their own input type (E4SRec always trains with CE; LLMD4Rec's CRM config is SASRecD's)."""
    return not hasattr(model_class, "input_type")


def crm_loss_regime(value):
    """The loss_type and train_neg_sample_args that ``crm_loss_type`` names; None for None."""
    if value is None:
        return None
    regime = CRM_LOSS_REGIMES.get(str(value).upper())
    if regime is None:
        raise ConfigError(f"crm_loss_type must be one of {', '.join(CRM_LOSS_REGIMES)} or None, got {value!r}")
    return regime


# Keys RecBole accepts that no yaml of RecBole's names: set by its Config, given by run_recboles
# to the processes of a distributed run, or read by its code without a default.
RECBOLE_KEYS_WITHOUT_DEFAULT = frozenset({
    "model", "dataset", "config_files", "MODEL_TYPE", "MODEL_INPUT_TYPE", "eval_type", "device", "single_spec",
    "valid_neg_sample_args", "test_neg_sample_args", "verbose",
    "local_rank", "nproc", "world_size", "offset", "ip", "port",
    "encoding", "eta", "tail_ratio", "token_num_threshold", "xgb_early_stopping_rounds",
    "cin", "contrast", "feature_num", "has_residual", "norm", "sim", "use_filter",
})
# The paper's symbols, which users type for the keys (LLMD4Rec's T1 is E4SRec's distill_temperature).
PAPER_SYMBOLS = {
    "T1": ("distill_temperature", "llm"), "T2": ("distill_temperature", "crm"),
    "gamma": ("distill_gamma", None), "beta": ("distill_beta", None), "T_max": ("mutual_rounds", None),
}
logger = logging.getLogger(__name__)


def dataset_config_file(dataset):
    """The plugin's yaml for a data set: its own, or the protocol of ``CONVERTED_DATASET_CONFIG``."""
    own = DATASET_CONFIG_DIR / f"{dataset}.yaml"
    return own if own.is_file() else DATASET_CONFIG_DIR / CONVERTED_DATASET_CONFIG


def plugin_config_files(model, dataset):
    """The plugin's yaml files for a model and a data set, lowest precedence first."""
    return [PROPERTIES_DIR / "overall.yaml", PROPERTIES_DIR / "model" / f"{model}.yaml", dataset_config_file(dataset)]


def recbole_parent_config_files(model_class):
    """RecBole's yaml files of the RecBole models a plugin model subclasses, base first.

    SASRecD subclasses SASRec, so it starts from SASRec's defaults (n_layers, n_heads, ...).
    """
    if not isinstance(model_class, type) or model_class.__module__.startswith("recbole."):
        return []
    files = [
        RECBOLE_MODEL_PROPERTIES / f"{parent.__name__}.yaml"
        for parent in reversed(model_class.__mro__[1:])
        if parent.__module__.startswith("recbole.model.")
    ]
    return [file for file in files if file.is_file()]


def require_int(config, key, minimum, note=""):
    """``config[key]`` if it is an int (not a bool) >= ``minimum``, else one ConfigError."""
    value = config[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{key} must be an int >= {minimum}{note}, got {value!r}")
    return value


def _type_name(value):
    return type(value).__name__


def check_value_type(key, default, value):
    """Raise ConfigError when ``value`` is not of the kind ``default`` says ``key`` takes.

    Only keys with a non-empty default are checked; lists also accept one scalar of the
    element kind (RecBole turns ``topk: 10`` into ``[10]``).
    """
    if default is None or value is None:
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple, str, int))
    elif isinstance(default, dict):
        ok = isinstance(value, dict)
    elif isinstance(default, str):
        # --gpu_id=0 / --gpu_id=0,1 arrive as an int / a tuple; RecBole turns them into a str.
        ok = isinstance(value, (str, int, tuple)) and not isinstance(value, bool)
    else:
        ok = True
    if not ok:
        raise ConfigError(
            f"config key '{key}' takes a {_type_name(default)} (default {default!r}), "
            f"got {_type_name(value)} {value!r}: fix it in your yaml file or on the command line"
        )


def check_config_file(path):
    """A user's yaml file must exist and hold a mapping of keys (RecBole reads it as one)."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as file:
            content = yaml.safe_load(file)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid yaml{line}: {problem}") from None
    if content is not None and not isinstance(content, dict):
        raise ConfigError(f"config file {path} must hold 'key: value' lines, not a {_type_name(content)}")


def check_training_settings(config):
    """RecBole's own training keys, which RecBole checks late (a traceback mid-run) or never."""
    for key in ("epochs", "train_batch_size", "eval_batch_size"):
        require_int(config, key, 1)
    require_int(config, "stopping_step", 0, " (0: stop at the first epoch that does not improve)")
    if not config["learning_rate"] > 0:
        raise ConfigError(f"learning_rate must be > 0, got {config['learning_rate']!r}")
    topk = config["topk"]
    if not topk or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in topk):
        raise ConfigError(f"topk must be a list of ints >= 1 (e.g. [5, 10, 20]), got {topk!r}")
    metric, _, cutoff = str(config["valid_metric"]).lower().partition("@")
    metrics = [str(name).lower() for name in config["metrics"]]
    if metric not in metrics or (cutoff and (not cutoff.isdigit() or int(cutoff) not in topk)):
        raise ConfigError(
            f"valid_metric {config['valid_metric']!r} is not among what is evaluated (metrics {config['metrics']}, "
            f"topk {topk}): name one of those metrics at one of those cut-offs, e.g. NDCG@10"
        )


def closest_key(key, known, sections=()):
    """What the user most likely meant by the unknown ``key``: the key a paper symbol stands
    for, else the known key spelled most alike in any case; None when nothing is close."""
    if key in PAPER_SYMBOLS:
        meant, section = PAPER_SYMBOLS[key]
        if section in sections:
            return f"'{meant}' in the {section}: section"
        if meant in known:
            return f"'{meant}'"
    by_lower = {str(name).lower(): name for name in sorted(known, key=str)}
    match = difflib.get_close_matches(str(key).lower(), by_lower, n=1)
    return f"'{by_lower[match[0]]}'" if match else None


def model_yaml_keys(model, dataset):
    """The keys ``model``'s layers below the user's (RecBole's and the plugin's yaml files) know."""
    layers = Config.__new__(Config)
    layers._init_parameters_category()
    layers.yaml_loader = layers._build_yaml_loader()
    layers._load_internal_config_dict(model, get_model(model), dataset)
    return layers.known_keys()


def _parse_literal(text):
    """``"3"`` -> 3, ``"[5, 10]"`` -> [5, 10], ``"true"`` -> True, ``"SASRec"`` -> "SASRec"."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


class Config(RecBoleConfig):
    """RecBole's Config with the plugin's yaml layers and the plugin's model lookup."""

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None, cmd_args=None,
                 check_keys=True):
        self._cmd_args = list(cmd_args or [])
        # What the user gave, kept so a composite model can build its parts' configs.
        self.user_layers = {
            "config_file_list": list(config_file_list or []),
            "config_dict": dict(config_dict or {}),
            "cmd_args": list(self._cmd_args),
        }
        for file in config_file_list or []:
            check_config_file(file)
        super().__init__(model, dataset, config_file_list, config_dict)
        check_training_settings(self)
        if check_keys:
            self._check_user_keys()

    def for_model(self, model, overrides=None):
        """The config ``model`` gets from the same user inputs, then ``overrides`` on top.

        LLMD4Rec builds its SASRecD and E4SRec with this: each part starts from its own
        yaml defaults, sees every key the user set, and takes the ``crm:`` / ``llm:``
        section of the LLMD4Rec config last.
        """
        layers = self.user_layers
        config_dict = {key: value for key, value in layers["config_dict"].items() if key != "model"}
        cmd_args = [arg for arg in layers["cmd_args"] if not arg.startswith("--model=")]
        # This config checked the user's keys against every part's; a key for the other part is no typo.
        config = Config(model, self.dataset, layers["config_file_list"], config_dict, cmd_args, check_keys=False)
        for key, value in (overrides or {}).items():
            check_value_type(key, config.final_config_dict.get(key), value)
            config[key] = value
        check_training_settings(config)
        return config

    def known_keys(self):
        """The keys this config's layers below the user's know, and those RecBole sets or reads itself."""
        categories = {key for names in self.parameters.values() for key in names}
        return set(self.internal_config_dict) | categories | RECBOLE_KEYS_WITHOUT_DEFAULT

    def _check_user_keys(self):
        """One warning line for every key the user gave that no layer knows (RecBole keeps
        those silently, so a misspelt key trains with the default); with strict_keys, one
        ConfigError naming them all. A composite model's keys are its own and its parts', and
        the keys of each part's section are checked against that part's."""
        # a composite model's parts (LLMD4Rec.PARTS: section -> model): a key either part knows is its key
        parts = getattr(self.model_class, "PARTS", {})
        part_keys = {section: model_yaml_keys(part, self.dataset) for section, part in parts.items()}
        known = self.known_keys().union(*part_keys.values())
        unknown = [(f"'{key}'", closest_key(key, known, tuple(parts)))
                   for key in self.external_config_dict if key not in known]
        for section, keys in part_keys.items():
            overrides = self.final_config_dict.get(section)
            if not isinstance(overrides, dict):  # LLMD4Rec.check_settings refuses it
                continue
            for key in (key for key in overrides if key not in keys):
                other = next((other for other, its in part_keys.items() if key in its), None)
                closest = f"'{key}' in the {other}: section" if other else closest_key(key, keys)
                unknown.append((f"'{key}' in the {section}: section", closest))
        if not unknown:
            return
        if self["strict_keys"]:
            named = ", ".join(f"{key} (did you mean {closest}?)" if closest else key for key, closest in unknown)
            several = len(unknown) > 1
            raise ConfigError(f"unknown config key{'s' if several else ''} {named}: fix or remove "
                              f"{'them' if several else 'it'} (strict_keys refuses keys that no layer of the model knows)")
        for key, closest in unknown:
            # RecBole's init_logger runs after the config is built; until then Python's
            # last-resort handler prints a warning on stderr.
            logger.warning(f"unknown config key {key} (ignored)" + (f"; did you mean {closest}?" if closest else ""))

    def _convert_config_dict(self, config_dict):
        """Read string values as Python literals; RecBole ``eval``s them, which runs code
        and turns a value that happens to name a local variable into that variable."""
        for key, value in config_dict.items():
            if isinstance(value, str):
                config_dict[key] = _parse_literal(value)
        return config_dict

    def _load_cmd_line(self):
        cmd_config_dict = {}
        for arg in self._cmd_args:
            key, sep, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
            if not key or not sep:
                raise ConfigError(f"cannot read argument '{arg}': overrides take the form --key=value")
            if key in cmd_config_dict and cmd_config_dict[key] != value:
                raise ConfigError(f"'--{key}' is given twice with different values")
            cmd_config_dict[key] = value
        return self._convert_config_dict(cmd_config_dict)

    def _get_model_and_dataset(self, model, dataset):
        model = model if model is not None else self.external_config_dict.get("model")
        dataset = dataset if dataset is not None else self.external_config_dict.get("dataset")
        if model is None:
            raise ConfigError("no model given: pass --model=NAME (e.g. SASRec)")
        if dataset is None:
            raise ConfigError("no data set given: pass --dataset=NAME (e.g. ml-100k)")
        if isinstance(model, str):
            return model, get_model(model), dataset
        return model.__name__, model, dataset

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        for file in recbole_parent_config_files(model_class) + plugin_config_files(model, dataset):
            if not file.is_file():
                continue
            config_dict = self._update_internal_config_dict(str(file))
            if file.parent == DATASET_CONFIG_DIR and config_dict:
                self.parameters["Dataset"] += [k for k in config_dict if k not in self.parameters["Dataset"]]

    def _set_default_parameters(self):
        # RecBole checks some values here (topk, metrics, eval_args, ...) with its own exception types.
        try:
            super()._set_default_parameters()
        except (ValueError, TypeError, NotImplementedError, RuntimeError) as exc:
            raise ConfigError(f"{exc}: fix it in your yaml file or on the command line") from None
        # RecBole points ml-100k at its bundled copy whatever data_path says; a data_path the
        # user gives is where they keep their own copy, and a wrong one must say so.
        if self.dataset == BUNDLED_DATASET and "data_path" in self.external_config_dict:
            self.final_config_dict["data_path"] = os.path.join(self.external_config_dict["data_path"], self.dataset)

    def _init_device(self):
        """One process: RecBole's own. A rank of a multi-process run (``local_rank`` set): RecBole
        1.2.1 always joins with NCCL and takes a GPU; here the group is NCCL on GPUs, gloo on CPUs."""
        final = self.final_config_dict
        if "local_rank" not in final:
            return super()._init_device()
        if isinstance(final["gpu_id"], tuple):
            final["gpu_id"] = ",".join(map(str, final["gpu_id"]))
        final["gpu_id"] = str(final["gpu_id"])
        os.environ["CUDA_VISIBLE_DEVICES"] = final["gpu_id"]
        import torch

        if distributed.uses_gpu(final):
            distributed.check_gpus(final["nproc"], final["gpu_id"])
            final["device"] = torch.device("cuda", final["local_rank"])
            torch.cuda.set_device(final["local_rank"])
        else:
            final["device"] = torch.device("cpu")
        final["single_spec"] = False
        distributed.join_process_group(final)
        if final["local_rank"] + final["offset"] != 0:  # RecBole quiets local_rank != 0; here every rank but the first
            final["state"] = "error"
            final["show_progress"] = False
            final["verbose"] = False

    def _get_final_config_dict(self):
        for key, value in self.external_config_dict.items():
            check_value_type(key, self.internal_config_dict.get(key), value)
        final = super()._get_final_config_dict()
        regime = crm_loss_regime(final.get("crm_loss_type"))
        if regime is not None and follows_loss_type(self.model_class):
            final.update(copy.deepcopy(regime))  # before RecBole derives the input type and the negative sampling from them
        return final


# Checkpoints pickle the Config; let torch's weights_only loader accept this subclass too.
allow_checkpoint_class(Config)
