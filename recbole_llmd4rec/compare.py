"""Side by side: RecBole's baselines, the distillation baselines and LLMD4Rec on one data set.

    python run_llmd4rec.py --compare --dataset=beauty --data_path=DIR [--seeds=3] [--ablation]
                           [--methods=SASRec,LLMD4Rec] [--key=value ...]

Every method runs with the same data set, split and full-ranking evaluator (the plugin's
config layers plus the ``--key=value`` overrides, which reach every method), for each seed,
each in a fresh interpreter. The distillation methods start from the SASRec (and E4SRec)
that the same seed's rows trained, as the paper does ("initialize the ID embeddings using
pre-trained SASRec"), so a seed trains each base model once:

- SASRec: SASRecD without a teacher, which is RecBole's SASRec (same parameters, loss and
  function, computed in length groups: 4.6-5.6x faster on Beauty, BENCHMARKS.md), saved as a
  RecBole SASRec checkpoint; the distilled CRMs are that same SASRec trained further, so
  "identical recipe" holds by construction. ``SASRec_RecBole`` (opt-in) trains RecBole's class.
- E4SRec: alone, its item embeddings from that SASRec.
- KD LLM->CRM, DLLM2Rec, LEADER: that SASRec learns from that E4SRec (one CRM phase).
- KD CRM->LLM: E4SRec learns from that SASRec (one LLM phase).
- LLMD4Rec_C / LLMD4Rec_L: Algorithm 1 from that SASRec; the CRM and the LLM after the last round.
- GRU4Rec, S3Rec: RecBole's models, unchanged (S3Rec pre-trains for ``S3REC_PRETRAIN_EPOCHS``,
  then fine-tunes).
- ``--ablation`` adds LLMD4Rec w/o sample weight, trained; w/o embedding update, whose round 1
  is the same seed's LLMD4Rec round 1 (the update starts in round 2), so only round 2 is trained,
  from the state that run kept after round 1; and w/o loop (T_max = 1), read from round 1 of
  that run: every step of a run is seeded by its position, so a one-round run is that run's
  first round (tests/test_compare.py and tests/test_mutual_distill.py check both). Their rows
  go to a second table, each under the full LLMD4Rec row with its change against it.

Runs go method by method, each over every seed (a method's bases come earlier in the list), so
an interrupted comparison has the rows LLMD4Rec is judged by for every seed before it spends
hours on the RecBole baselines.

A finished (method, seed) leaves ``<out>/<method>/seed<k>.json``; a rerun with the same
settings reuses it instead of retraining, and an LLMD4Rec run cut short resumes from its own
``state.pth``, so an interrupted comparison resumes. The tables (Markdown and CSV, mean and
sample standard deviation over the seeds) are rewritten after every finished run; ``--tables``
rewrites them from every finished result of the chosen methods without training.
"""

import argparse
import csv
import hashlib
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from recbole_llmd4rec.atomic import copy_atomically, files_sha256, replacing, write_json_atomically
from recbole_llmd4rec.errors import LLMD4RecError, report_bad_input

NOT_METRICS = ("round", "model", "split", "phase_seconds", "epochs")  # the other columns of rounds.json
DEFAULT_SEEDS = 3
FIRST_SEED = 2020  # RecBole's default seed; seed k of a comparison is FIRST_SEED + k
LATENCY_USERS = 200  # users scored one at a time for the per-user inference latency
LATENCY_WARMUP = 10  # users scored first and not timed (allocations, kernel selection)
# what a run's log shows of its progress: RecBole's line after each validation, our phase starts
LOGGED_VALIDATION = re.compile(r"epoch (\d+) evaluating \[.*valid_score: ([0-9.]+)\]")
LOGGED_PHASE = re.compile(r"LLMD4Rec phase (\w+):")


@dataclass(frozen=True)
class Method:
    """One trained model (or one LLMD4Rec run) and the table rows it gives.

    ``rows``: (row name, which model of an LLMD4Rec run it reports: "CRM", "LLM", or None
    for a plain RecBole run). ``starts_from``: earlier methods of the same seed it depends on;
    a trained method starts from their checkpoints ("SASRec" -> crm_checkpoint, "E4SRec" ->
    llm_checkpoint). ``first_round_of``: instead of training, read the rows from round 1 of
    this earlier method's LLMD4Rec run (T_max = 1 is that run's first round step for step, as
    each step is seeded by its position); it must be in ``starts_from``. ``round1_of``: start
    from the state that earlier LLMD4Rec run kept after round 1 (``start_state``), for a run
    whose settings differ from it only in what later rounds read; it must be in ``starts_from``.
    """

    name: str
    model: str
    settings: dict = field(default_factory=dict)
    starts_from: tuple = ()
    rows: tuple = ()
    latency: tuple = ()  # rows whose deployable model's per-user latency is measured
    first_round_of: Optional[str] = None
    round1_of: Optional[str] = None

    def __post_init__(self):
        for run in (self.first_round_of, self.round1_of):
            assert run is None or run in self.starts_from

    def llmd4rec_bases(self):
        return [run for run in (self.first_round_of, self.round1_of) if run]

    def row_names(self):
        return [row for row, _ in self.rows] or [self.name]


def _ablation_rows(label):
    return (f"LLMD4Rec_C {label}", "CRM"), (f"LLMD4Rec_L {label}", "LLM")


ONE_WAY = {"mutual_rounds": 1}
# The no-teacher control: the CRM phases of an LLM -> CRM run from the same seed's SASRec, with
# the teacher's weight at 0 (no teacher store is built), so extra epochs are not read as distillation.
NO_TEACHER = {"directions": "llm_to_crm", "distill_beta": 0.0}
# S3Rec's pre-training has no early stopping, and RecBole's 500 epochs are far beyond a CPU's
# budget per seed. The comparison pre-trains for this many.
S3REC_PRETRAIN_EPOCHS = 10
# The paper runs S3Rec with Masked Item Prediction only (Sec. 5.1.2): the other objectives' weights at 0.
S3REC_MIP_ONLY = {"aap_weight": 0.0, "map_weight": 0.0, "sp_weight": 0.0}
METHODS = [  # in run order; a method's bases come before it
    Method("SASRec", "SASRecD", latency=("SASRec",)),
    Method("E4SRec", "E4SRec", starts_from=("SASRec",), latency=("E4SRec",)),
    Method("LLMD4Rec", "LLMD4Rec", {}, ("SASRec",), (("LLMD4Rec_C", "CRM"), ("LLMD4Rec_L", "LLM")),
           latency=("LLMD4Rec_C",)),
    # as many CRM phases as LLMD4Rec_C's (mutual_rounds), and its first one alone for the one-way rows
    Method("SASRec_continued", "LLMD4Rec", NO_TEACHER, ("SASRec", "E4SRec"), (("SASRec_continued", "CRM"),)),
    Method("SASRec_continued_1", "LLMD4Rec", {}, ("SASRec_continued",), (("SASRec_continued_1", "CRM"),),
           first_round_of="SASRec_continued"),
    Method("KD_LLM_to_CRM", "LLMD4Rec", {**ONE_WAY, "directions": "llm_to_crm", "sample_weight": False},
           ("SASRec", "E4SRec"), (("KD LLM->CRM", "CRM"),)),
    Method("DLLM2Rec", "LLMD4Rec", {**ONE_WAY, "directions": "llm_to_crm", "distiller": "dllm2rec"},
           ("SASRec", "E4SRec"), (("DLLM2Rec", "CRM"),)),
    Method("LEADER", "LLMD4Rec", {**ONE_WAY, "directions": "llm_to_crm", "distiller": "leader"},
           ("SASRec", "E4SRec"), (("LEADER", "CRM"),)),
    Method("KD_CRM_to_LLM", "LLMD4Rec", {**ONE_WAY, "directions": "crm_to_llm", "sample_weight": False},
           ("SASRec",), (("KD CRM->LLM", "LLM"),)),
    Method("GRU4Rec", "GRU4Rec"),
    Method("S3Rec", "S3Rec", {"pretrain_epochs": S3REC_PRETRAIN_EPOCHS, **S3REC_MIP_ONLY}),
]
OPT_IN = [Method("SASRec_RecBole", "SASRec", latency=("SASRec_RecBole",))]  # only when named in --methods
ABLATIONS = [
    Method("LLMD4Rec_no_sample_weight", "LLMD4Rec", {"sample_weight": False}, ("SASRec",), _ablation_rows("w/o w")),
    # Without the update, round 1 is LLMD4Rec's round 1 (the update starts in round 2).
    Method("LLMD4Rec_no_embedding_update", "LLMD4Rec", {"embedding_update": False}, ("SASRec", "LLMD4Rec"),
           _ablation_rows("w/o eu"), round1_of="LLMD4Rec"),
    Method("LLMD4Rec_no_loop", "LLMD4Rec", {}, ("LLMD4Rec",), _ablation_rows("w/o loop"), first_round_of="LLMD4Rec"),
]
ALL_METHODS = METHODS + ABLATIONS + OPT_IN  # every name --methods accepts
# What later runs of a seed read from a finished run is kept beside its record, outside the run
# folder: the model file of a base (<method>/seed<k>.pth) and the state after round 1 of an
# LLMD4Rec run that an ablation starts from (<method>/seed<k>.round1.pth). They are a few MB
# each, so git keeps them with the records (benchmarks/results/.gitignore) and a fresh machine
# does not train those bases again.
MODEL_BASES = {base for m in ALL_METHODS for base in m.starts_from if base not in m.llmd4rec_bases()}
ROUND1_BASES = {m.round1_of for m in ALL_METHODS if m.round1_of}
KEPT_MODEL_SUFFIX, KEPT_ROUND1_SUFFIX = ".pth", ".round1.pth"
# Overrides reach every run, so these would erase what tells the LLMD4Rec runs apart, or where each
# run keeps its files and which seed it has: refused.
PER_RUN_KEYS = (*dict.fromkeys(key for m in ALL_METHODS if m.model == "LLMD4Rec" for key in m.settings),
                "crm_checkpoint", "llm_checkpoint", "start_state", "checkpoint_dir", "seed")
IMPROVEMENTS = (("LLMD4Rec_C", "SASRec"), ("LLMD4Rec_L", "E4SRec"))  # (row, the backbone it improves)
# (LLM -> CRM row, its no-teacher control: the same CRM phases without the teacher)
CONTROLS = (("LLMD4Rec_C", "SASRec_continued"), ("KD LLM->CRM", "SASRec_continued_1"),
            ("DLLM2Rec", "SASRec_continued_1"), ("LEADER", "SASRec_continued_1"))
# (ablation row, the full LLMD4Rec row it takes a component from)
FULL_ROW = {part: row for row, part in next(m for m in METHODS if m.name == "LLMD4Rec").rows}
ABLATION_PAIRS = tuple((row, FULL_ROW[part]) for part in FULL_ROW for m in ABLATIONS
                       for row, row_part in m.rows if row_part == part)
ABLATION_ROWS = {row for row, _ in ABLATION_PAIRS}
# (row, row it should beat): the questions the comparison answers, each judged against the seeds' spread
SPREAD_CHECKS = (*IMPROVEMENTS, *CONTROLS, ("LLMD4Rec_C", "KD LLM->CRM"), ("LLMD4Rec_C", "DLLM2Rec"), ("LLMD4Rec_C", "LEADER"),
                 ("LLMD4Rec_L", "KD CRM->LLM"), *((full, row) for row, full in ABLATION_PAIRS))
CHANGES = (*IMPROVEMENTS, *CONTROLS, *ABLATION_PAIRS)  # (row, base): the table gives the row's change against its base
CHANGE_BASES = tuple(dict.fromkeys(base for _, base in CHANGES))


CRM_LOSS_KEY = "crm_loss_type"
DEFAULT_CRM_LOSS = "CE"  # RecBole's SASRec default; --crm_loss_type=BPR is the paper's regime
CRM_LOSS_LABELS = {"BPR": "BPR on one uniformly sampled negative (the paper's regime)",
                   "CE": "cross-entropy over all items (the strong regime)"}
# What --crm_loss_type sets for every CRM of a comparison (E4SRec keeps CE): refused as overrides.
REGIME_KEYS = ("loss_type", "train_neg_sample_args")


def with_crm_loss(overrides):
    """``(regime, overrides)``: the comparison's CRM loss (``--crm_loss_type``, default CE,
    upper case) and the overrides with it named once, so every run and record carries it."""
    given = [arg.partition("=")[2] for arg in overrides if arg.startswith(f"--{CRM_LOSS_KEY}=")]
    regime = (given[-1] if given else DEFAULT_CRM_LOSS).upper()
    if regime not in CRM_LOSS_LABELS:
        raise LLMD4RecError(f"--{CRM_LOSS_KEY} must be one of {', '.join(CRM_LOSS_LABELS)} for a comparison, "
                            f"got {given[-1]!r}")
    rest = [arg for arg in overrides if not arg.startswith(f"--{CRM_LOSS_KEY}=")]
    return regime, [*rest, f"--{CRM_LOSS_KEY}={regime}"]


def shown_overrides(overrides):
    """The overrides as a table prints them: ``data_path`` and any absolute path as DIR, so a
    table names no folder of the machine it was made on."""
    shown = []
    for arg in overrides:
        key, _, value = arg[2:].partition("=")
        shown.append(f"--{key}=DIR" if key == "data_path" or os.path.isabs(value) else arg)
    return shown


def against_spread(row, base, metric):
    """Whether ``row``'s mean beats ``base``'s on ``metric`` by more than the seeds' spread (the
    larger of the two sample sds): "higher", "lower" (trails by more than it) or "within"; None
    when either row has fewer than two seeds, so no spread is known."""
    if min(row["seeds"], base["seeds"]) < 2:
        return None
    difference = row[metric] - base[metric]
    spread = max(row[f"{metric} sd"], base[f"{metric} sd"])
    if abs(difference) <= spread:
        return "within"
    return "higher" if difference > 0 else "lower"


def yaml_settings(config_files, dataset):
    """What the runs read besides the overrides: the user's and the plugin's yaml files, parsed,
    so an edited value retrains instead of reusing a stale result, while an edited comment, or
    the same files in another checkout or install, keeps every finished run. The protocol for
    data sets without a yaml of their own counts only for those that read it, so its arrival
    left the finished runs of the others valid."""
    import yaml

    from recbole_llmd4rec.config import CONVERTED_DATASET_CONFIG, DATASET_CONFIG_DIR, PROPERTIES_DIR, dataset_config_file

    unread = {DATASET_CONFIG_DIR / CONVERTED_DATASET_CONFIG} - {dataset_config_file(dataset)}
    named = [(f"config file {index + 1}", Path(file)) for index, file in enumerate(config_files)]
    for root in (PROPERTIES_DIR, DATASET_CONFIG_DIR):
        named += [(f"{root.name}/{path.relative_to(root).as_posix()}", path) for path in sorted(root.rglob("*.yaml"))
                  if path not in unread]
    settings = []
    for name, path in named:
        try:
            settings.append((name, yaml.safe_load(path.read_text(encoding="utf-8"))))
        except (OSError, yaml.YAMLError) as exc:
            raise LLMD4RecError(f"cannot read {path} ({type(exc).__name__}): fix the file or its path") from None
    return settings


def identity_overrides(dataset, overrides):
    """The overrides as a record's identity reads them: ``--data_path`` by the sha256 of the data
    set's atomic files there, so the same data in another folder or on another machine reuses
    the finished records (a folder without them stays as written: the runs will say what is missing)."""
    identity = []
    for arg in overrides:
        key, _, value = arg[2:].partition("=")
        files = sorted(Path(value, dataset).glob(f"{dataset}.*")) if key == "data_path" else []
        if files:
            arg = f"--data_path={' '.join(path.suffix for path in files)} sha256 {files_sha256(files)}"
        identity.append(arg)
    return identity


def fingerprint(*parts):
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


# ---- one (method, seed) in a fresh interpreter ------------------------------------------------
def run_one(spec):
    """Train and test one method for one seed (``spec`` from :func:`Comparison.spec`); write its
    result file. Runs in the child interpreter."""
    from recbole_llmd4rec.quick_start import run_llmd4rec

    method = next(m for m in ALL_METHODS if m.name == spec["method"])
    if method.first_round_of:
        raise LLMD4RecError(f"{method.name} is read from {method.first_round_of}'s run, not trained")
    config_dict = {**method.settings, **spec["checkpoints"], "seed": spec["seed"],
                   "checkpoint_dir": spec["run_dir"]}
    result = run_llmd4rec(method.model, spec["dataset"], spec["config_files"], config_dict,
                          cmd_args=spec["overrides"])
    saved_model_file = result["saved_model_file"]
    model_folder = Path(saved_model_file).parent  # an LLMD4Rec run's folder, with its rounds and states
    result_file = Path(spec["result_file"])
    kept_model_file = result_file.with_suffix(KEPT_MODEL_SUFFIX)
    if method.model == "SASRecD":  # what users deploy, and what the distillation runs start from
        saved_model_file = export_as_recbole_sasrec(saved_model_file, kept_model_file)
    elif method.name in MODEL_BASES:
        saved_model_file = copy_atomically(saved_model_file, kept_model_file)
    import torch

    record = {"method": method.name, "seed": spec["seed"], "fingerprint": spec["fingerprint"],
              CRM_LOSS_KEY: spec[CRM_LOSS_KEY],
              # the condition the times were measured under (OMP_NUM_THREADS sets it)
              "torch_threads": torch.get_num_threads(),
              # DLLM2Rec writes no SASRec checkpoint (see MutualDistillTrainer._export)
              "checkpoint": record_path(saved_model_file, spec["out_dir"]) if os.path.isfile(saved_model_file) else None,
              "rows": {}, "train_seconds": {}, "latency_ms": {}}
    if method.name in ROUND1_BASES:
        from recbole_llmd4rec.trainer import ROUND_STATE_FILE

        round1_state = model_folder / ROUND_STATE_FILE.format(1)
        kept_round1 = copy_atomically(round1_state, result_file.with_name(result_file.stem + KEPT_ROUND1_SUFFIX))
        record["round1_state"] = record_path(kept_round1, spec["out_dir"])
    if method.model == "LLMD4Rec":
        from recbole_llmd4rec.trainer import PHASES_FILE

        rounds = json.loads((model_folder / "rounds.json").read_text())
        record["rounds"] = rounds  # every round's rows, which the "w/o loop" ablation reads
        # every phase's start score, validation curve and chosen epoch
        record["phases"] = json.loads((model_folder / PHASES_FILE).read_text())
        record.update(rows_of_round(rounds, max(row["round"] for row in rounds), method.rows))
    else:
        record["rows"][method.name] = {metric: float(value) for metric, value in result["test_result"].items()}
        record["train_seconds"][method.name] = result["train_seconds"]
        record["phases"] = [{"phase": "train", "valid_curve": sorted(map(list, result["valid_curve"].items())),
                             "chosen_epoch": result["best_epoch"]}]
    for row_name in method.latency:
        record["latency_ms"][row_name] = per_user_latency_ms(saved_model_file)
    write_json_atomically(spec["result_file"], record)


def record_path(path, out_dir):
    """``path`` as a record names it: relative to the comparison's folder, which may move
    (another machine, a copy), unless it lies outside (e.g. a ``--checkpoint_dir`` override)."""
    relative = os.path.relpath(os.path.abspath(path), out_dir)
    return os.path.abspath(path) if relative.split(os.sep)[0] == os.pardir else Path(relative).as_posix()


def logged_progress(log_file):
    """How far a started run's log got: its last LLMD4Rec phase (if it has phases), that phase's
    last validated epoch and score; None when the log shows no validated epoch yet."""
    phase, last = None, None
    for line in Path(log_file).read_text(encoding="utf-8", errors="replace").splitlines():
        if match := LOGGED_PHASE.search(line):
            phase, last = match.group(1), None
        elif match := LOGGED_VALIDATION.search(line):
            last = match.groups()
    if last is None:
        return None
    epoch, score = last
    return f"{f'phase {phase}, ' if phase else ''}epoch {epoch} validated {float(score):.4f}"


def rows_of_round(rounds, round_index, rows):
    """The test results of ``rows`` ((row name, "CRM" or "LLM"), ...) after round ``round_index``
    of an LLMD4Rec run's ``rounds`` (rounds.json), with the training time of rounds 1..round_index."""
    seconds = sum(row["phase_seconds"] for row in rounds if 0 < row["round"] <= round_index and row["split"] == "test")
    result = {"rows": {}, "train_seconds": {}}
    for row_name, part in rows:
        final = next(r for r in rounds if (r["round"], r["model"], r["split"]) == (round_index, part, "test"))
        result["rows"][row_name] = {key: value for key, value in final.items() if key not in NOT_METRICS}
        result["train_seconds"][row_name] = seconds
    return result


def export_as_recbole_sasrec(sasrecd_file, path):
    """A SASRecD checkpoint (its best epoch) saved as a RecBole SASRec checkpoint."""
    from recbole_llmd4rec.export import export_sasrec_checkpoint
    from recbole_llmd4rec.quick_start import load_data_and_model

    config, model, *_ = load_data_and_model(sasrecd_file)
    return export_sasrec_checkpoint(model, config, str(path))


def per_user_latency_ms(model_file):
    from recbole_llmd4rec.quick_start import load_data_and_model

    config, model, _, _, _, test_data = load_data_and_model(model_file)
    return median_user_latency_ms(config, model, test_data)


def median_user_latency_ms(config, model, test_data):
    """Median milliseconds to score every item for one test user, one user at a time, after
    ``LATENCY_WARMUP`` users."""
    import torch

    model.eval()
    synchronize = torch.cuda.synchronize if config["device"].type == "cuda" else (lambda: None)
    timings = []
    with torch.inference_mode():
        for batch in test_data:
            interaction = batch[0]
            for row in range(len(interaction)):
                user = interaction[row : row + 1].to(config["device"])
                synchronize()
                started = time.perf_counter()
                model.full_sort_predict(user)
                synchronize()
                timings.append(time.perf_counter() - started)
                if len(timings) >= LATENCY_WARMUP + LATENCY_USERS:
                    return 1000 * statistics.median(timings[LATENCY_WARMUP:])
    return 1000 * statistics.median(timings[LATENCY_WARMUP:] or timings)


CLAIM_FILE = "claim"  # in a run's folder while a process trains it: "<host> <pid>"
CLAIM_POLL_SECONDS = 60  # how often a process whose remaining runs all wait looks again


@contextmanager
def claimed(run_dir):
    """Claim a run's folder for this process: yields None when claimed (released at the end),
    else the "<host> <pid>" of the live process that holds it. A claim whose process has died on
    this host is taken over."""
    path = Path(run_dir) / CLAIM_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    me = f"{socket.gethostname()} {os.getpid()}"
    while True:
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = path.read_text().strip() if path.exists() else ""
            host, _, pid = holder.partition(" ")
            if holder and not (host == socket.gethostname() and not process_alive(int(pid))):
                yield holder
                return
            path.unlink(missing_ok=True)  # its process died: the run resumes from what it saved
            continue
        with os.fdopen(descriptor, "w") as handle:
            handle.write(me)
        break
    try:
        yield None
    finally:
        path.unlink(missing_ok=True)


def process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


# ---- the comparison ----------------------------------------------------------------------------
class Comparison:
    """Every method of ``methods`` for every seed, in dependency order, reusing finished runs."""

    def __init__(self, dataset, config_files, overrides, seeds, methods, out_dir):
        self.dataset = dataset
        self.config_files = [str(Path(f).resolve()) for f in config_files]
        self.crm_loss_type, self.overrides = with_crm_loss(overrides)
        self.identity_overrides = identity_overrides(dataset, self.overrides)
        self.seeds = [FIRST_SEED + k for k in range(seeds)]
        self.methods = methods
        self.out_dir = Path(out_dir).resolve()
        self.records = {}  # (method name, seed) -> result record
        self.settings = yaml_settings(self.config_files, dataset)
        self._check_one_regime()

    def _check_one_regime(self):
        """Records of the two CRM losses never share a folder (a record without the key is from
        before the switch, when every CRM trained with CE)."""
        for result_file in sorted(self.out_dir.glob("*/seed*.json")):
            try:
                regime = json.loads(result_file.read_text()).get(CRM_LOSS_KEY, "CE")
            except (OSError, ValueError):
                continue  # not a record; a run writes its own whole
            if regime != self.crm_loss_type:
                raise LLMD4RecError(
                    f"{self.out_dir} holds {regime} records ({result_file.name} of {result_file.parent.name}), and "
                    f"this comparison trains its CRMs with {self.crm_loss_type}: give it a --compare_dir of its own")

    def checkpoint(self, method_name, seed):
        """The model file a finished run kept (records hold it relative to the folder), or None."""
        path = self.records[(method_name, seed)]["checkpoint"]
        return self.out_dir / path if path else None

    def missing_bases(self, method, seed):
        """The finished bases ``method`` starts from whose model file is gone (the folder came from
        another machine, or the file was deleted): they are trained again, from the same seed."""
        if method.first_round_of:
            return []
        model_files = {base: self.checkpoint(base, seed) for base in method.starts_from if base != method.round1_of}
        return [base for base, model_file in model_files.items() if not (model_file and model_file.is_file())]

    def spec(self, method, seed):
        checkpoints = {}
        for base in () if method.first_round_of else method.starts_from:
            if base == method.round1_of:
                # a record without its kept state (one of an older version, or a folder copied
                # without it) leaves round 1 to be trained again
                kept = self.records[(base, seed)].get("round1_state")
                if kept and (self.out_dir / kept).is_file():
                    checkpoints["start_state"] = str(self.out_dir / kept)
            else:
                key = "crm_checkpoint" if base == "SASRec" else "llm_checkpoint"
                model_file = self.checkpoint(base, seed)
                checkpoints[key] = str(model_file) if model_file else None
        run_fingerprint = fingerprint(method.name, method.model, method.settings, seed, self.dataset,
                                      self.settings, self.identity_overrides,
                                      [self.records[(base, seed)]["fingerprint"] for base in method.starts_from])
        return {"method": method.name, "seed": seed, "dataset": self.dataset, "config_files": self.config_files,
                "overrides": self.overrides, CRM_LOSS_KEY: self.crm_loss_type, "checkpoints": checkpoints, "fingerprint": run_fingerprint,
                "out_dir": str(self.out_dir),
                "run_dir": str(self.out_dir / method.name / f"seed{seed}"),
                "result_file": str(self.out_dir / method.name / f"seed{seed}.json")}

    def run(self, log=print, poll_seconds=CLAIM_POLL_SECONDS):
        """Train every run still to train, in run order, and write the tables. Several processes
        may run the same comparison on one folder: each run is claimed by the process that trains
        it (``<run folder>/claim``), the others go on with the runs that do not wait for it and
        read its record once it is written."""
        self._check_bases()
        self._train_gone_bases_first(log)
        pending = [(method, seed) for method in self.methods for seed in self.seeds]
        announced = set()
        while pending:
            if self._finish_next(pending, log, announced) is None:
                time.sleep(poll_seconds)  # every run left trains elsewhere or waits for one that does
        return self.write_tables()

    def _finish_next(self, pending, log, announced):
        """Finish the first of ``pending`` that this process can finish now (its bases finished,
        no other process training it) and remove it; returns it, or None when there is none."""
        for method, seed in pending:
            if any((base, seed) not in self.records for base in method.starts_from):
                continue  # a base of this seed trains in another process
            spec = self.spec(method, seed)
            record = self._finished(spec)
            if record is not None:
                log(f"compare: {method.name}, seed {seed}: reused {spec['result_file']}")
            elif method.first_round_of:
                log(f"compare: {method.name}, seed {seed}: round 1 of {method.first_round_of}")
                record = self._first_round(method, seed, spec)
            else:
                with claimed(spec["run_dir"]) as holder:
                    if holder is not None:
                        if (method.name, seed) not in announced:
                            announced.add((method.name, seed))
                            log(f"compare: {method.name}, seed {seed}: trains in another process ({holder}); "
                                "going on with the runs that do not wait for it")
                        continue
                    record = self._finished(spec)  # the other process may have finished it meanwhile
                    if record is None:
                        log(f"compare: {method.name}, seed {seed} ...")
                        self._run_child(spec)
                        record = self._finished(spec)
            self.records[(method.name, seed)] = record
            pending.remove((method, seed))
            self.write_tables()
            return method, seed
        return None

    def status(self):
        """``(method, seed, state)`` of every run, in run order, training and writing nothing."""
        lines = []
        selected = {m.name for m in self.methods}
        for method in self.methods:
            for seed in self.seeds:
                missing = [base for base in method.starts_from if (base, seed) not in self.records]
                unselected = [base for base in missing if base not in selected]
                if unselected:  # its records were not read either: say what the run would refuse
                    lines.append((method.name, seed, f"starts from {', '.join(unselected)}: add it to --methods"))
                    continue
                if missing:
                    lines.append((method.name, seed, f"waits for {', '.join(missing)}"))
                    continue
                spec = self.spec(method, seed)
                record = self._finished(spec)
                if record is not None:
                    self.records[(method.name, seed)] = record
                    state = "finished"
                elif Path(spec["result_file"]).is_file():
                    state = "trains again: its result is from other settings"
                elif method.first_round_of:
                    state = f"no training: read from round 1 of {method.first_round_of}"
                elif Path(spec["run_dir"]).is_dir():
                    state = "started: continues from what it saved"
                    log_file = Path(spec["run_dir"]) / "run.log"
                    progress = logged_progress(log_file) if log_file.is_file() else None
                    if progress:
                        state += f" (last logged: {progress})"
                else:
                    state = "to train"
                gone = [] if record is not None else self.missing_bases(method, seed)
                if gone:
                    state += f", after {', '.join(gone)} (model file gone) trains again"
                if record is None and method.round1_of and "start_state" not in spec["checkpoints"]:
                    state += f", with its own round 1 ({method.round1_of}'s round-1 state is not kept)"
                lines.append((method.name, seed, state))
        return lines

    def _train_gone_bases_first(self, log):
        """Before anything else trains: each finished base whose model file is gone (a fresh
        machine, a folder copied with its records only) and that a run still to train starts from
        is trained again. A base is shorter than most runs that start from it, and its file, kept
        beside its record, outlives the machine, so what an interruption can cost is trained last."""
        self.status()  # reads every finished record; trains nothing
        for method in self.methods:
            for seed in self.seeds:
                if (method.name, seed) in self.records or any((base, seed) not in self.records
                                                              for base in method.starts_from):
                    continue
                for base in self.missing_bases(method, seed):
                    log(f"compare: {base}, seed {seed}: its model file is gone; training it again for {method.name}")
                    self._train_again(base, seed, log)

    def _train_again(self, name, seed, log):
        """Train a finished base again whose model file is gone. Every run is seeded, so on the same
        library versions this reproduces the recorded run; a difference is reported, not hidden."""
        before = self.records[(name, seed)]
        spec = self.spec(next(m for m in ALL_METHODS if m.name == name), seed)
        self._run_child(spec)
        self.records[(name, seed)] = after = self._finished(spec)
        if after["rows"] != before["rows"]:
            log(f"compare: warning: {name}, seed {seed} trained again tests differently from its record "
                f"({before['rows']} then, {after['rows']} now); the runs that started from it earlier keep their rows")
        self.write_tables()  # with this run's time and latency

    def _check_bases(self):
        """Before anything trains: every method's bases run earlier in the list (or finished)."""
        earlier = set()
        for method in self.methods:
            missing = [base for base in method.starts_from
                       if base not in earlier and not all((base, seed) in self.records for seed in self.seeds)]
            if missing:
                raise LLMD4RecError(f"{method.name} starts from {', '.join(missing)}: add it to --methods")
            earlier.add(method.name)

    def _first_round(self, method, seed, spec):
        """The record of a T_max = 1 method, read from round 1 of its base run's table."""
        base = self.records[(method.first_round_of, seed)]
        rounds = base.get("rounds")
        if rounds is None:
            base_file = self.out_dir / method.first_round_of / f"seed{seed}.json"
            raise LLMD4RecError(f"{method.name} reads round 1 of {base_file}, which holds no round table: "
                             "delete that file and rerun (the run resumes from its kept state)")
        record = {"method": method.name, "seed": seed, "fingerprint": spec["fingerprint"],
                  CRM_LOSS_KEY: spec[CRM_LOSS_KEY], "torch_threads": base["torch_threads"], "checkpoint": None, "latency_ms": {},
                  "first_round_of": method.first_round_of, **rows_of_round(rounds, 1, method.rows)}
        write_json_atomically(spec["result_file"], record)
        return record

    @staticmethod
    def _finished(spec):
        path = Path(spec["result_file"])
        if not path.is_file():
            return None
        record = json.loads(path.read_text())
        return record if record.get("fingerprint") == spec["fingerprint"] else None

    def _run_child(self, spec):
        log_file = Path(spec["run_dir"]) / "run.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parent.parent),
                                                           os.environ.get("PYTHONPATH", "")]))
        with open(log_file, "a", encoding="utf-8") as log:
            completed = subprocess.run(
                [sys.executable, "-m", "recbole_llmd4rec.compare", "--run-one", json.dumps(spec)],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        if completed.returncode != 0 or self._finished(spec) is None:
            tail = log_file.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:]
            reason = tail[0].removeprefix("error: ") if tail else ""
            raise LLMD4RecError(f"{spec['method']} (seed {spec['seed']}) failed: {reason} "
                                f"(whole log: {log_file}); finished runs are kept, rerun to resume")

    # ---- tables -------------------------------------------------------------------------------
    @property
    def metrics(self):
        """The evaluator's metrics (e.g. hit@10, ndcg@10), in the order the runs report them."""
        for record in self.records.values():
            return list(next(iter(record["rows"].values())))
        return []

    def table_rows(self):
        """One dict per table row with the mean and spread over the seeds that finished."""
        metrics = self.metrics
        rows = []
        for method in self.methods:
            for row_name in method.row_names():
                seeds = self._finished_seeds(row_name)
                records = [self.records[(method.name, s)] for s in seeds]
                if not records:
                    continue
                row = {"method": row_name, "seeds": len(records)}
                for metric in metrics:
                    values = [r["rows"][row_name][metric] for r in records]
                    row[metric] = statistics.mean(values)
                    row[f"{metric} sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
                row["train_s"] = statistics.mean(r["train_seconds"][row_name] for r in records)
                latencies = [r["latency_ms"][row_name] for r in records if row_name in r["latency_ms"]]
                row["latency_ms_per_user"] = statistics.mean(latencies) if latencies else None
                rows.append(row)
        by_name = {row["method"]: row for row in rows}
        for changed, base in CHANGES:
            if changed in by_name and base in by_name:
                # over the seeds both rows finished: mid-comparison, a mean over other seeds would
                # show a seed-to-seed difference as the method's change
                base_seeds = set(self._finished_seeds(base))
                seeds = [s for s in self._finished_seeds(changed) if s in base_seeds]
                for metric in metrics if seeds else ():
                    changed_value, base_value = (statistics.mean(self._values(row, metric, seeds))
                                                 for row in (changed, base))
                    by_name[changed][f"{metric} vs {base}"] = (
                        100 * (changed_value - base_value) / base_value if base_value else None)
        return rows

    def _method_of(self, row_name):
        return next(m for m in self.methods if row_name in m.row_names()).name

    def _finished_seeds(self, row_name):
        method_name = self._method_of(row_name)
        return [s for s in self.seeds if (method_name, s) in self.records]

    def _values(self, row_name, metric, seeds):
        method_name = self._method_of(row_name)
        return [self.records[(method_name, s)]["rows"][row_name][metric] for s in seeds]

    def write_tables(self):
        rows = self.table_rows()
        stem = self.out_dir / f"comparison-{self.dataset}"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        metrics = self.metrics
        columns = ["method", "seeds", *[c for m in metrics for c in (m, f"{m} sd")], "train_s",
                   "latency_ms_per_user", *[f"{m} vs {base}" for base in CHANGE_BASES for m in metrics]]
        with replacing(stem.with_suffix(".csv")) as temporary, open(temporary, "w", newline="",
                                                                    encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        markdown = self.markdown(rows, metrics)
        with replacing(stem.with_suffix(".md")) as temporary:
            Path(temporary).write_text(markdown, encoding="utf-8")
        return markdown

    def markdown(self, rows, metrics):
        header = ["method", "seeds", *map(metric_label, metrics), "train s", "latency ms/user"]
        threads = sorted({str(r.get("torch_threads", "not recorded")) for r in self.records.values()})
        lines = [f"Data set {self.dataset}; CRM loss: {CRM_LOSS_LABELS[self.crm_loss_type]}, E4SRec's cross-entropy "
                 f"over all items; seeds {', '.join(map(str, self.seeds))}; "
                 f"overrides: {' '.join(shown_overrides(self.overrides))}; torch threads per run: {', '.join(threads)}. "
                 "Mean +- sample sd over the finished seeds (no sd for one seed); "
                 "a change (%) against another row is over the seeds both rows finished.",
                 "", *table_lines(header, [r for r in rows if r["method"] not in ABLATION_ROWS], metrics,
                                  [base for _, base in (*IMPROVEMENTS, *CONTROLS)])]
        lines += ["", "train s: this row's own training (the distillation rows start from the same seed's "
                      "SASRec and, for the LLM -> CRM ones, E4SRec, whose times are their own rows')."]
        by_name = {row["method"]: row for row in rows}
        ablation = [by_name[name] for full in FULL_ROW.values()
                    for name in (full, *(row for row, base in ABLATION_PAIRS if base == full)) if name in by_name]
        if any(row["method"] in ABLATION_ROWS for row in ablation):
            # only the change against the full run: the full rows' change against the backbones is above
            lines += ["", "Ablation (the paper's Fig. 3): each variant against the full LLMD4Rec of the same "
                          "seeds. w/o w: no sample weights; w/o eu: no embedding update; w/o loop: one round, "
                          "read from round 1 of the LLMD4Rec run, its train s that round's.",
                      "", *table_lines(header, ablation, metrics, FULL_ROW.values())]
        lines += self.spread_lines(rows, metrics)
        return "\n".join(lines) + "\n"

    @staticmethod
    def spread_lines(rows, metrics):
        """One line per SPREAD_CHECKS pair whose rows both finished: on which metrics the first
        row is higher, within, or lower than the second by more than the seeds' spread."""
        by_name = {row["method"]: row for row in rows}
        lines = []
        for name, base_name in SPREAD_CHECKS:
            if name not in by_name or base_name not in by_name:
                continue
            row, base = by_name[name], by_name[base_name]
            pair = f"{name} vs {base_name}"
            if row["seeds"] != base["seeds"]:  # mid-comparison: say what each mean is over
                pair = f"{name} ({seeds_label(row['seeds'])}) vs {base_name} ({seeds_label(base['seeds'])})"
            verdicts = {metric: against_spread(row, base, metric) for metric in metrics}
            if None in verdicts.values():
                lines.append(f"- {pair}: fewer than 2 seeds, no spread to judge by yet")
                continue
            parts = [f"{verdict} on {', '.join(metric_label(m) for m, v in verdicts.items() if v == verdict)}"
                     for verdict in ("higher", "within", "lower") if verdict in verdicts.values()]
            lines.append(f"- {pair}: {'; '.join(parts)}")
        if lines:
            lines = ["", "Against the seed spread (difference of the means beyond the larger of the two sample "
                         "sds):", *lines]
        return lines


def table_lines(header, rows, metrics, bases):
    """A Markdown table of ``rows`` (from :meth:`Comparison.table_rows`): mean +- sd per metric,
    with the row's change against whichever of ``bases`` it has one against."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["method"], str(row["seeds"])]
        for metric in metrics:
            cell = f"{row[metric]:.4f}"
            if row["seeds"] > 1:  # one seed has no spread to show
                cell += f" +- {row[f'{metric} sd']:.4f}"
            for base in bases:
                change = row.get(f"{metric} vs {base}")
                if change is not None:
                    cell += f" ({change:+.1f}% vs {base})"
            cells.append(cell)
        cells.append(f"{row['train_s']:.0f}")
        latency = row["latency_ms_per_user"]
        cells.append("" if latency is None else f"{latency:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def seeds_label(count):
    return f"{count} seed" if count == 1 else f"{count} seeds"


def metric_label(metric):
    """RecBole's metric name as the paper writes it: hit@10 -> HR@10, ndcg@10 -> NDCG@10."""
    return metric.replace("hit", "HR").replace("ndcg", "NDCG")


def select_methods(names, ablation):
    """``names``: comma-separated method names (default: all); ``ablation`` adds the ablations."""
    if names:
        wanted = [name.strip() for name in names.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in {m.name for m in ALL_METHODS}]
        if unknown:
            raise LLMD4RecError(f"unknown method {unknown[0]!r}; choose from "
                             f"{', '.join(m.name for m in ALL_METHODS)}")
    else:
        wanted = [m.name for m in METHODS]
    if ablation:
        wanted += [m.name for m in ABLATIONS]
    # a row read from, or started from, another run's first round needs that run
    wanted += [base for m in ALL_METHODS if m.name in wanted for base in m.llmd4rec_bases()]
    return [m for m in ALL_METHODS if m.name in wanted]


def compare(dataset, config_files, overrides, seeds=DEFAULT_SEEDS, methods=None, ablation=False, out_dir=None,
            status=False, tables=False):
    """Run (or resume) the comparison; returns the Markdown table. With ``status``, print each
    run's state instead and return those lines. With ``tables``, write the tables from the
    finished results of the chosen methods and return them, training nothing (side runs with
    ``--methods`` write tables of their own methods only; this rebuilds the whole table)."""
    if seeds < 1:
        raise LLMD4RecError(f"--seeds must be >= 1, got {seeds}")
    given = [arg[2:].partition("=")[0] for arg in overrides if arg.startswith("--")]
    refused = [key for key in given if key in PER_RUN_KEYS]
    if refused:
        raise LLMD4RecError(f"--{refused[0]} cannot go to a comparison: each run sets {', '.join(PER_RUN_KEYS)} "
                            "itself (--seeds sets how many seeds); drop it, or run one model with it alone")
    regime_keys = [key for key in given if key in REGIME_KEYS]
    if regime_keys:
        raise LLMD4RecError(f"--{regime_keys[0]} cannot go to a comparison: --{CRM_LOSS_KEY}=BPR or CE sets the loss "
                            "of every CRM (E4SRec keeps cross-entropy)")
    regime, overrides = with_crm_loss(overrides)
    out_dir = out_dir or Path("saved") / f"compare-{dataset}-{regime.lower()}"
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise LLMD4RecError(f"--compare_dir {out_dir} is a file: name a folder (it is made if missing)")
    comparison = Comparison(dataset, config_files, overrides, seeds, select_methods(methods, ablation), out_dir)
    if not (status or tables):
        markdown = comparison.run()
        print(markdown)
        print(f"tables: {comparison.out_dir}/comparison-{dataset}.md and .csv")
        return markdown
    lines = comparison.status()  # reads every finished record; trains nothing
    if status:
        finished = [(name, seed) for name, seed, state in lines if state == "finished"]
        # a run's rows share its training time; rows read from another run's round 1 trained nothing
        seconds = sum(max(comparison.records[key]["train_seconds"].values(), default=0.0) for key in finished
                      if not comparison.records[key].get("first_round_of"))
        text = "\n".join([*(f"{name}, seed {seed}: {state}" for name, seed, state in lines),
                          f"{len(finished)} of {len(lines)} runs finished, after {seconds / 3600:.1f} h of training"])
        print(f"{text}\n(in {comparison.out_dir}; nothing was trained)")
    if not tables:
        return text
    if not comparison.records:  # empty tables would replace the ones a finished run wrote
        raise LLMD4RecError(f"--tables: no finished result in {comparison.out_dir} for these settings; run the "
                            "same command without --tables first, or check --compare_dir and the overrides")
    markdown = comparison.write_tables()
    print(markdown)
    print(f"tables: {comparison.out_dir}/comparison-{dataset}.md and .csv "
          f"(from {len(comparison.records)} finished results; nothing was trained)")
    return markdown


def main(argv=None):
    parser = argparse.ArgumentParser(description="internal: one (method, seed) of a comparison")
    parser.add_argument("--run-one", required=True, help="the run's spec as JSON")
    try:
        run_one(json.loads(parser.parse_args(argv).run_one))
    except LLMD4RecError as exc:  # the parent quotes the log's last line
        sys.exit(report_bad_input(exc))


if __name__ == "__main__":
    main()
