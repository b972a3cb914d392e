"""Side by side: RecBole's baselines, the distillation baselines and LLMD4Rec on one data set.

    python run_llmd4rec.py --compare --dataset=beauty --data_path=DIR [--seeds=3] [--ablation]
                           [--methods=SASRec,LLMD4Rec] [--key=value ...]

Every method runs with the same data set, split and full-ranking evaluator (the plugin's
config layers plus the ``--key=value`` overrides, which reach every method), for each seed,
each in a fresh interpreter. The distillation methods start from the SASRec (and E4SRec)
that the same seed's rows trained, as the paper does ("initialize the ID embeddings using
pre-trained SASRec"), so a seed trains each base model once:

- SASRec: SASRecD without a teacher, which is RecBole's SASRec (same parameters, loss and
  function, computed in length groups, BENCHMARKS.md has its speed), saved as a
  RecBole SASRec checkpoint; the distilled CRMs are that same SASRec trained further, so
  "identical recipe" holds by construction. ``SASRec_RecBole`` (opt-in) trains RecBole's class.
- E4SRec: alone, its item embeddings from that SASRec.
- KD LLM->CRM, DLLM2Rec, LEADER: that SASRec learns from that E4SRec (one CRM phase).
- KD CRM->LLM: E4SRec learns from that SASRec (one LLM phase).
- LLM-SRec: E4SRec learns from that SASRec's user states (one LLM phase, ``distiller: llmsrec``).
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
rewrites them from every finished result of the chosen methods without training, and
``--tables --as_recorded`` from every record in the folder, settings unchecked (records that an
older version of the code kept).
"""


import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from recbole_llmd4rec.atomic import files_sha256, write_json_atomically
from recbole_llmd4rec.errors import LLMD4RecError
from recbole_llmd4rec.experiments.child import rows_of_round
from recbole_llmd4rec.experiments.methods import (
    ALL_METHODS, CRM_LOSS_KEY, LLM_SIDE_KEYS, LLM_SIDE_MODELS, PER_RUN_KEYS, REGIME_KEYS, select_methods,
    with_crm_loss,
)
from recbole_llmd4rec.experiments.tables import ComparisonTables
from recbole_llmd4rec.trainer.run_state import at_arrival_value

DEFAULT_SEEDS = 3
# Settings that change no result and came after the first records were kept: left out of a record's
# identity, so their arrival keeps every finished record.
NOT_IN_IDENTITY = {"strict_keys", "process_group_timeout"}
# --nproc=N trains every run on N processes of this machine (RecBole's multi-process mode), which
# shapes the batches, so it is part of a record's identity; --port (where they meet) and how long they
# wait for each other are not, nor --nproc=1, which is one process as without it. The other
# multi-process keys place ranks on other machines, which a comparison, whose runs start on this
# one, does not do.
LAYOUT_NOT_IN_IDENTITY = ("port", "process_group_timeout")
OTHER_MACHINES_KEYS = ("world_size", "offset", "ip")
FIRST_SEED = 2020  # RecBole's default seed; seed k of a comparison is FIRST_SEED + k
# what a run's log shows of its progress: RecBole's line after each validation, our phase starts
LOGGED_VALIDATION = re.compile(r"epoch (\d+) evaluating \[.*valid_score: ([0-9.]+)\]")
LOGGED_PHASE = re.compile(r"LLMD4Rec phase (\w+):")


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
            values = yaml.safe_load(path.read_text(encoding="utf-8"))
            if isinstance(values, dict):
                values = {key: value for key, value in values.items()
                          if key not in NOT_IN_IDENTITY and not at_arrival_value(key, value)}
            settings.append((name, values))
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
        if key in LAYOUT_NOT_IN_IDENTITY or (key == "nproc" and value.strip() == "1"):
            continue
        files = sorted(Path(value, dataset).glob(f"{dataset}.*")) if key == "data_path" else []
        if files:
            arg = f"--data_path={' '.join(path.suffix for path in files)} sha256 {files_sha256(files)}"
        identity.append(arg)
    return identity


def fingerprint(*parts):
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


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
class Comparison(ComparisonTables):
    """Every method of ``methods`` for every seed, in dependency order, reusing finished runs."""

    def __init__(self, dataset, config_files, overrides, seeds, methods, out_dir=None):
        self.dataset = dataset
        self.config_files = [str(Path(f).resolve()) for f in config_files]
        self.crm_loss_type, self.overrides = with_crm_loss(overrides)
        self.identity_overrides = identity_overrides(dataset, self.overrides)
        self.seeds = [FIRST_SEED + k for k in range(seeds)]
        self.methods = methods
        out_dir = Path(out_dir or Path("saved") / f"compare-{dataset}-{self.crm_loss_type.lower()}")
        if out_dir.exists() and not out_dir.is_dir():
            raise LLMD4RecError(f"--compare_dir {out_dir} is a file: name a folder (it is made if missing)")
        self.out_dir = out_dir.resolve()
        self.records = {}  # (method name, seed) -> result record
        self.settings = yaml_settings(self.config_files, dataset)
        self._check_one_regime()

    def _check_one_regime(self):
        """Records of the two CRM losses never share a folder (a record without the key is from
        before the switch, when every CRM trained with CE)."""
        for result_file in sorted(self.out_dir.glob("*/seed*.json")):
            try:
                record = json.loads(result_file.read_text())
            except (OSError, ValueError):
                continue  # not a record; a run writes its own whole
            if not isinstance(record, dict):
                continue
            regime = record.get(CRM_LOSS_KEY, "CE")
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
        identity = self.identity_overrides if method.model in LLM_SIDE_MODELS else [
            arg for arg in self.identity_overrides if arg[2:].partition("=")[0] not in LLM_SIDE_KEYS]
        run_fingerprint = fingerprint(method.name, method.model, method.settings, seed, self.dataset,
                                      self.settings, identity,
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
        self._train_gone_bases_first(log, poll_seconds)
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

    def _train_gone_bases_first(self, log, poll_seconds=CLAIM_POLL_SECONDS):
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
                    self._train_again(base, seed, log, poll_seconds)

    def _train_again(self, name, seed, log, poll_seconds=CLAIM_POLL_SECONDS):
        """Train a finished base again whose model file is gone. Every run is seeded, so on the same
        library versions this reproduces the recorded run; a difference is reported, not hidden.
        Under the run's claim, like any run: another process of the same comparison that found the
        same file gone trains it, and this one waits and reads what it wrote."""
        before = self.records[(name, seed)]
        spec = self.spec(next(m for m in ALL_METHODS if m.name == name), seed)
        announced = False
        while True:
            with claimed(spec["run_dir"]) as holder:
                if holder is None:
                    after = self._finished(spec)
                    trained_meanwhile = after is not None and after.get("checkpoint") and \
                        (self.out_dir / after["checkpoint"]).is_file()
                    if trained_meanwhile:
                        self.records[(name, seed)] = after
                        return
                    self._run_child(spec)
                    break
            if not announced:
                announced = True
                log(f"compare: {name}, seed {seed}: trained again in another process ({holder}); waiting for it")
            time.sleep(poll_seconds)
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

    def read_as_recorded(self):
        """Read every record of the chosen methods and seeds in the folder without checking that
        its settings are this command's (``--tables --as_recorded``): for records kept by an older
        version of the code, whose identity hashes settings that version had. Trains nothing."""
        self.as_recorded = True
        for method in self.methods:
            for seed in self.seeds:
                path = self.out_dir / method.name / f"seed{seed}.json"
                if not path.is_file():
                    continue
                try:
                    record = json.loads(path.read_text(encoding="utf-8"))
                except ValueError:
                    raise LLMD4RecError(f"{path} is not a record (not json): move it out of {self.out_dir}") from None
                problem = self._not_a_record_of(method, record)
                if problem:
                    raise LLMD4RecError(f"{path} is not a {method.name} record the tables can read ({problem}); "
                                        "move it out of the folder")
                self.records[(method.name, seed)] = record

    def _not_a_record_of(self, method, record):
        """What keeps ``record`` from giving ``method``'s table rows, or None: every row, each with
        the metrics of the records read before it, and its training time."""
        if not isinstance(record, dict) or not isinstance(record.get("rows"), dict):
            return "no rows"
        if not isinstance(record.get("train_seconds"), dict) or not isinstance(record.get("latency_ms"), dict):
            return "no train_seconds or latency_ms"
        metrics = set(self.metrics)
        for row in method.row_names():
            values = record["rows"].get(row)
            if not isinstance(values, dict):
                return f"no row {row!r}"
            if metrics and set(values) != metrics:
                return f"row {row!r} has metrics {', '.join(sorted(values))}, the other records {', '.join(sorted(metrics))}"
            if row not in record["train_seconds"]:
                return f"no train_seconds of row {row!r}"
        return None

    @staticmethod
    def _finished(spec):
        path = Path(spec["result_file"])
        if not path.is_file():
            return None
        record = json.loads(path.read_text())
        return record if isinstance(record, dict) and record.get("fingerprint") == spec["fingerprint"] else None

    def _run_child(self, spec):
        log_file = Path(spec["run_dir"]) / "run.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                           os.environ.get("PYTHONPATH", "")]))
        with open(log_file, "a", encoding="utf-8") as log:
            completed = subprocess.run(
                [sys.executable, "-m", "recbole_llmd4rec.experiments.child", json.dumps(spec)],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        if completed.returncode != 0 or self._finished(spec) is None:
            tail = log_file.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:]
            reason = tail[0].removeprefix("error: ") if tail else ""
            raise LLMD4RecError(f"{spec['method']} (seed {spec['seed']}) failed: {reason} "
                                f"(whole log: {log_file}); finished runs are kept, rerun to resume")


def compare(dataset, config_files, overrides, seeds=DEFAULT_SEEDS, methods=None, ablation=False, out_dir=None,
            status=False, tables=False, as_recorded=False):
    """Run (or resume) the comparison; returns the Markdown table. With ``status``, print each
    run's state instead and return those lines. With ``tables``, write the tables from the
    finished results of the chosen methods and return them, training nothing (side runs with
    ``--methods`` write tables of their own methods only; this rebuilds the whole table); with
    ``as_recorded`` too, from every record in the folder, whatever settings made it."""
    if seeds < 1:
        raise LLMD4RecError(f"--seeds must be >= 1, got {seeds}")
    if as_recorded and (status or not tables):
        raise LLMD4RecError("--as_recorded only goes with --tables, without --status (it reads records without "
                            "checking their settings, so nothing may train from them and no run's state is "
                            "known): give --tables alone with it, or drop it")
    given = [arg[2:].partition("=")[0] for arg in overrides if arg.startswith("--")]
    refused = [key for key in given if key in PER_RUN_KEYS]
    if refused:
        raise LLMD4RecError(f"--{refused[0]} cannot go to a comparison: each run sets {', '.join(PER_RUN_KEYS)} "
                            "itself (--seeds sets how many seeds); drop it, or run one model with it alone")
    elsewhere = [key for key in given if key in OTHER_MACHINES_KEYS]
    if elsewhere:
        raise LLMD4RecError(f"--{elsewhere[0]} cannot go to a comparison: its runs start their processes on this "
                            "machine; give --nproc=N (and --port=P) to train each run on N processes here")
    regime_keys = [key for key in given if key in REGIME_KEYS]
    if regime_keys:
        raise LLMD4RecError(f"--{regime_keys[0]} cannot go to a comparison: --{CRM_LOSS_KEY}=BPR or CE sets the loss "
                            "of every CRM (E4SRec keeps cross-entropy)")
    comparison = Comparison(dataset, config_files, overrides, seeds, select_methods(methods, ablation), out_dir)
    if not (status or tables):
        markdown = comparison.run()
        print(markdown)
        print(f"tables: {comparison.out_dir}/comparison-{dataset}.md and .csv")
        return markdown
    if as_recorded:  # never with status (refused above), so no run's state is listed
        comparison.read_as_recorded()
    else:
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
                            "same command without --tables first, or check --compare_dir and the overrides "
                            "(--as_recorded reads records that older code kept)")
    markdown = comparison.write_tables()
    print(markdown)
    print(f"tables: {comparison.out_dir}/comparison-{dataset}.md and .csv "
          f"(from {len(comparison.records)} finished results; nothing was trained)")
    return markdown
