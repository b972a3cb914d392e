"""Quick start of the plugin: RecBole's ``run_recbole`` / ``load_data_and_model`` made to
know plugin models, plugin yaml layers and clear errors for missing data."""

import logging
import os
import sys
import time
from logging import getLogger

import torch
from recbole.data import create_dataset, data_preparation
from recbole.utils import FeatureType, dict2str, init_logger, init_seed, set_color

from recbole_llmd4rec.atomic import check_dataset_identity, dataset_identity, load_checkpoint
from recbole_llmd4rec.config import BUNDLED_DATASET, Config, require_int
from recbole_llmd4rec.distributed import (
    LAUNCH_DEFAULTS, RESUME_HINT, as_one_process, check_gpus, check_port_free, uses_gpu, writes_files,
)
from recbole_llmd4rec.errors import BAD_INPUT_EXIT_STATUS, ConfigError, DatasetNotFoundError, LLMD4RecError, first_reason
from recbole_llmd4rec.utils import get_model, get_trainer

BUNDLED_HINT = "drop --data_path to use the copy that ships inside recbole, or point it at the folder holding ml-100k/"
FEATURE_KINDS = tuple(kind.value for kind in FeatureType)  # token, token_seq, float, float_seq
CONVERT_HINT = (
    "convert a sequence file with `python convert_dataset.py --input FILE.txt "
    "--name {name} --output DIR` and pass --data_path=DIR"
)


def check_dataset_files(config):
    """Fail before RecBole does: RecBole tries a download (offline: a URLError) instead."""
    if config["dataset_save_path"]:
        return
    name = config["dataset"]
    data_dir = config["data_path"]
    suffixes = config["benchmark_filename"] or [None]
    expected = [
        os.path.join(data_dir, f"{name}.{suffix}.inter" if suffix else f"{name}.inter") for suffix in suffixes
    ]
    missing = [path for path in expected if not os.path.isfile(path)]
    if missing:
        hint = BUNDLED_HINT if name == BUNDLED_DATASET else CONVERT_HINT.format(name=name)
        raise DatasetNotFoundError(f"data set '{name}' not found: looked for {os.path.abspath(missing[0])}; {hint}")
    for path in expected:
        check_inter_header(path, config)


def check_inter_header(path, config):
    """The .inter file's header names ``name:type`` columns, among them every column ``load_col``
    asks for, and data rows follow: RecBole would fail later, deep in pandas or in the split."""
    with open(path, encoding=config["encoding"] or "utf-8", errors="replace") as file:
        header, first_row = file.readline().rstrip("\r\n"), file.readline().strip()
    if not header:
        raise LLMD4RecError(f"{path} is empty: it needs a header (e.g. user_id:token, item_id:token and "
                            "timestamp:float, tab-separated) and one interaction per line")
    columns = {}
    for column in header.split(config["field_separator"]):
        field, _, kind = column.partition(":")
        if kind not in FEATURE_KINDS:
            raise LLMD4RecError(
                f"{path}: header column {column!r} is not name:type (type one of {', '.join(FEATURE_KINDS)}, "
                f"columns separated by {config['field_separator']!r}), e.g. user_id:token; fix the header"
            )
        columns[field] = kind
    load_col = config["load_col"]
    wanted = load_col.get("inter", []) if isinstance(load_col, dict) else []
    absent = [column for column in wanted if column not in columns]
    if absent:
        raise LLMD4RecError(
            f"{path} has no column {absent[0]!r} (its header: {header!r}), which load_col names: add it, or set "
            "load_col and the fields it feeds (e.g. TIME_FIELD) in a yaml passed with --config_files"
        )
    if not first_row:
        raise LLMD4RecError(f"{path} holds no interactions below its header")


def check_settings(config):
    """The plugin model's and its trainer's own keys, checked before the data set loads (which can
    take a minute): each checks what it reads, in its ``check_settings``."""
    for owner in (get_model(config["model"]), get_trainer(config["MODEL_TYPE"], config["model"])):
        check = getattr(owner, "check_settings", None)
        if check is not None:
            check(config)


def load_dataset(config):
    """Create the RecBole dataset and its train/valid/test dataloaders."""
    check_dataset_files(config)
    try:
        dataset = create_dataset(config)
    except (ValueError, KeyError, IndexError, TypeError) as exc:  # pandas on rows of the wrong width: TypeError
        raise LLMD4RecError(
            f"could not load data set '{config['dataset']}' from {os.path.abspath(config['data_path'])}: "
            f"{type(exc).__name__}: {exc}; check the atomic files' header (e.g. user_id:token) and columns"
        ) from None
    # Logged before data_preparation, which turns a sequential data set's interactions
    # into prefix -> next-item training instances in place.
    getLogger().info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    for split, data in (("train", train_data), ("valid", valid_data), ("test", test_data)):
        if len(data._dataset) == 0:  # RecBole would train on, then fail on a missing result
            raise LLMD4RecError(
                f"data set '{config['dataset']}' leaves the {split} split empty after RecBole's filters and "
                f"split {config['eval_args']['split']}: leave-one-out needs users with at least 3 interactions"
            )
    return dataset, train_data, valid_data, test_data


def run_llmd4rec(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True, cmd_args=None):
    """Train and test one model, as RecBole's ``run_recbole`` does.

    Returns a dict with ``best_valid_score``, ``valid_score_bigger``, ``best_valid_result``
    and ``test_result`` (RecBole's keys) plus ``saved_model_file`` when ``saved``,
    ``train_seconds``, the wall time of ``trainer.fit``, and ``valid_curve`` (epoch -> validation
    score) and ``best_epoch`` where the trainer keeps them (the plugin's resumable trainers).
    """
    config = Config(model, dataset, config_file_list, config_dict, cmd_args)
    check_settings(config)
    check_dataset_files(config)
    layout = process_layout(config)
    if layout is not None:
        return run_processes(layout, model, dataset, config_file_list, config_dict, saved, cmd_args)
    return train_and_test(config, saved)


def train_and_test(config, saved=True):
    """``run_llmd4rec``'s work in one process, or in one rank of several."""
    init_seed(config["seed"], config["reproducibility"])
    if writes_files(config):
        init_logger(config)
    else:  # the other ranks of several processes: their errors on the console, no log file
        logging.basicConfig(level=logging.ERROR, handlers=[logging.StreamHandler()])
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)

    dataset, train_data, valid_data, test_data = load_dataset(config)

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    try:
        model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    except ValueError as exc:  # RecBole's models say so when the data set lacks a field they need
        reason = first_reason(exc).rstrip(".")
        raise LLMD4RecError(f"{config['model']} cannot be built on data set '{config['dataset']}': {reason}; "
                            "check its atomic files and the fields the config names") from None
    logger.info(model)

    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    # A trainer that reports on the test split during training (MutualDistillTrainer) says so.
    extra = {"test_data": test_data} if getattr(trainer, "needs_test_data", False) else {}
    started = time.time()
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"], **extra
    )
    # A resumed fit adds the time its interrupted run(s) spent up to their last saved epoch.
    train_seconds = getattr(trainer, "earlier_seconds", 0.0) + time.time() - started
    test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])

    logger.info(set_color("best valid ", "yellow") + f": {dict2str(best_valid_result)}")
    logger.info(set_color("test result", "yellow") + f": {dict2str(test_result)}")
    return {
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
        "saved_model_file": trainer.saved_model_file if saved else None,
        "train_seconds": train_seconds,
        "valid_curve": dict(getattr(trainer, "valid_curve", {})),
        "best_epoch": getattr(trainer, "best_epoch", None),
    }


def process_layout(config):
    """The processes ``config`` asks for: RecBole's ``nproc`` (on this machine), ``world_size`` (on
    all), ``offset`` (this machine's first rank), ``ip`` and ``port`` (rank 0's), with the defaults
    of RecBole's ``run``, checked before any process starts; None for one process (RecBole's rule)."""
    layout = {key: default if config[key] is None else config[key] for key, default in LAUNCH_DEFAULTS.items()}
    for key in ("nproc", "world_size", "offset", "port"):
        if not isinstance(layout[key], int) or isinstance(layout[key], bool):
            raise ConfigError(f"{key} must be an int, got {layout[key]!r}")
    nproc, world_size, offset = layout["nproc"], layout["world_size"], layout["offset"]
    if nproc == 1 and world_size <= 0:
        return None
    if nproc < 1:
        raise ConfigError(f"nproc must be >= 1 (the processes on this machine), got {nproc}")
    if world_size == -1:
        layout["world_size"] = world_size = nproc
    if world_size < 1 or offset < 0 or offset + nproc > world_size:
        raise ConfigError(
            f"this machine's ranks {offset}..{offset + nproc - 1} (--offset, --nproc) must lie within the run's "
            f"0..{world_size - 1} (--world_size: the processes on all machines)"
        )
    if not 0 < layout["port"] < 65536:
        raise ConfigError(f"port must be a TCP port (1-65535), got {layout['port']}")
    require_int(config, "process_group_timeout", 1, " (minutes)")
    modes = config["eval_args"]["mode"]
    if any(mode != "full" for mode in (modes.values() if isinstance(modes, dict) else [modes])):
        raise ConfigError(f"several processes evaluate with full ranking only: set eval_args mode: full, got {modes}")
    if uses_gpu(config.final_config_dict):
        check_gpus(nproc, config["gpu_id"])
    if offset == 0:  # rank 0 runs here and listens on the port
        check_port_free(layout["ip"], layout["port"])
    return layout


def run_processes(layout, model, dataset, config_file_list, config_dict, saved, cmd_args):
    """``run_llmd4rec`` on this machine's ``nproc`` ranks, started as RecBole's ``run`` does; returns
    rank 0's result (None on a machine without rank 0). A rank that fails or dies stops the others,
    and the run ends in one LLMD4RecError."""
    import torch.multiprocessing as mp

    messages = mp.get_context("spawn").SimpleQueue()
    # the resolved layout goes to every rank; the command line would override it there
    rank_dict = {**(config_dict or {}), **layout}
    rank_args = [arg for arg in cmd_args or [] if arg[2:].partition("=")[0] not in LAUNCH_DEFAULTS]
    failure = None
    try:
        mp.spawn(_run_rank, args=(model, dataset, config_file_list, rank_dict, saved, rank_args, messages),
                 nprocs=layout["nproc"], join=True)
    except (mp.ProcessRaisedException, mp.ProcessExitedException) as exc:  # spawn has stopped the other ranks
        failure = exc
    received = []
    while not messages.empty():
        received.append(messages.get())
    if failure is None:
        return next((message[1] for message in received if message[0] == "result"), None)
    raise LLMD4RecError(_failure_line(failure, received, layout["offset"]))


def _failure_line(failure, received, offset):
    """One line for a failed multi-process run: a rank's own error first, then a rank killed from
    outside, then a rank that lost the others, then an unexpected exception (its traceback printed)."""
    import torch.multiprocessing as mp

    errors = {kind: (rank, text) for kind, rank, text in reversed([m for m in received if m[0] != "result"])}
    if "error" in errors:
        rank, text = errors["error"]
        return f"rank {rank}: {text}"
    rank = offset + failure.error_index
    if isinstance(failure, mp.ProcessExitedException) and failure.signal_name:
        return f"rank {rank} was killed ({failure.signal_name}); the other ranks were stopped: {RESUME_HINT}"
    if "lost" in errors:
        rank, text = errors["lost"]
        return f"rank {rank} lost the other ranks ({text}): one of them stopped; {RESUME_HINT}"
    if isinstance(failure, mp.ProcessRaisedException):
        print(failure, file=sys.stderr)
        last = str(failure).strip().splitlines()[-1]
        return f"rank {rank} failed: {last} (its traceback is above); the other ranks were stopped"
    return f"rank {rank} exited with status {failure.exit_code}; the other ranks were stopped: {RESUME_HINT}"


def _run_rank(local_rank, model, dataset, config_file_list, config_dict, saved, cmd_args, messages):
    """One rank (torch's spawn calls it in a fresh interpreter): its Config joins the process group."""
    import torch.distributed as dist

    rank = local_rank + config_dict["offset"]
    try:
        # the keys were checked (and unknown ones named) once, before the ranks started
        config = Config(model, dataset, config_file_list, {**config_dict, "local_rank": local_rank}, cmd_args,
                        check_keys=False)
        result = train_and_test(config, saved)
    except LLMD4RecError as exc:
        messages.put(("error", rank, str(exc)))
        sys.exit(BAD_INPUT_EXIT_STATUS)
    except dist.DistError as exc:  # a collective failed: another rank is gone
        messages.put(("lost", rank, first_reason(exc)))
        sys.exit(BAD_INPUT_EXIT_STATUS)
    dist.destroy_process_group()
    if rank == 0:
        messages.put(("result", result))


def load_data_and_model(model_file):
    """RecBole's ``load_data_and_model`` for plugin and RecBole models alike.

    Returns ``(config, model, dataset, train_data, valid_data, test_data)``. A checkpoint
    saved on a GPU loads on a CPU-only machine.
    """
    checkpoint = load_checkpoint(model_file)
    config = as_one_process(checkpoint["config"])  # a rank's config, where several processes trained it
    if config["device"].type == "cuda" and not torch.cuda.is_available():
        config["device"] = torch.device("cpu")
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset, train_data, valid_data, test_data = load_dataset(config)

    init_seed(config["seed"], config["reproducibility"])
    check_dataset_identity(checkpoint, dataset_identity(train_data._dataset), model_file, "checkpoint")
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as exc:
        raise LLMD4RecError(
            f"{model_file} does not match model {config['model']} on data set '{config['dataset']}': "
            f"{first_reason(exc)}"
        ) from None
    model.load_other_parameter(checkpoint.get("other_parameter"))
    return config, model, dataset, train_data, valid_data, test_data
