"""What identifies an LLMD4Rec run and what its state files hold: the settings that shape it, their
hash (the run folder's name), which settings later rounds read first, and the resume machinery
of ``MutualDistillTrainer`` (every step checkpointed to ``state.pth``, rounds kept as
``state_round<t>.pth``, a run started from another run's round state)."""

import hashlib
import math
import os

from recbole.utils import init_seed

from recbole_llmd4rec.atomic import atomic_torch_save, files_sha256, load_checkpoint
from recbole_llmd4rec.distributed import barrier, global_rank, rank0_sees, writes_files
from recbole_llmd4rec.errors import LLMD4RecError
from recbole_llmd4rec.report import RoundReport

RUN_STATE_KEYS = ("finished_steps", "rows", "llm_phase_record", "crm", "llm")  # what state.pth holds
ROUND_STATE_KEYS = (*RUN_STATE_KEYS, "round", "settings")  # what state_round<t>.pth holds
ROUND_STATE_FILE = "state_round{}.pth"
PHASES_FILE = "phases.json"  # every phase's validation curve and chosen epoch
# Settings that the first rounds of a run do not read: key -> the first round whose steps it
# shapes. A run may start from another run's state after round t (``start_state``) when their
# settings differ only in keys first read after round t.
FIRST_ROUND_READING = {"embedding_update": 2, "mutual_rounds": math.inf, "start_state": math.inf}

# Config keys that change neither the training nor the results of an LLMD4Rec run.
RUN_IRRELEVANT_KEYS = {"show_progress", "state", "verbose", "gpu_id", "device", "worker", "log_wandb",
                       "wandb_project", "checkpoint_dir", "config_files", "local_rank", "single_spec",
                       "teacher_memory_gib",  # where the teacher store lives, not what it holds
                       "strict_keys",  # whether an unknown key warns or stops the run
                       # how the ranks of a multi-process run are laid out and meet (world_size, which
                       # shapes the batches, stays), and how long they wait for each other
                       "nproc", "offset", "ip", "port", "process_group_timeout"}

# Settings that came after runs and records were kept, at the value that does what every run did
# before they existed: a setting at that value is left out of a run's (and a record's) identity,
# so its arrival keeps every finished run; any other value counts.
ARRIVED_LATER = {"llm_num_layers": None, "llm_init": "pretrained",
                 # LLM-SRec's settings, read only with distiller: llmsrec
                 "llmsrec_weight": 1.0, "llmsrec_uniformity_weight": 1.0, "llmsrec_projection_size": 128}


def at_arrival_value(key, value):
    return key in ARRIVED_LATER and value == ARRIVED_LATER[key]


# Settings that name a model file: a run knows the file by its content, not its path, so a
# folder of model files moved to another place or machine still finds its runs, resume files and
# round states. Other paths (data_path, llm_path) count as written: the data set stays where it was.
FILE_SETTINGS = ("crm_checkpoint", "llm_checkpoint", "start_state")


def setting_value(key, value):
    """How a setting enters ``run_settings``: a file it names by the sha256 of its bytes."""
    if key in FILE_SETTINGS and isinstance(value, str) and os.path.isfile(value):
        return f"file sha256 {files_sha256([value])}"
    return repr(value)


def run_settings(*configs):
    """Every setting that shapes a run: per config, its sorted (key, value) pairs."""
    return [sorted((k, setting_value(k, v)) for k, v in c.final_config_dict.items()
                   if k not in RUN_IRRELEVANT_KEYS and not at_arrival_value(k, v))
            for c in configs]


def run_fingerprint(*configs):
    """A short hash of every setting that shapes a run, to name its folder."""
    return hashlib.sha256(repr(run_settings(*configs)).encode()).hexdigest()[:10]


def differing_settings(settings, other):
    """The keys whose values differ between two ``run_settings`` (or that only one has), except
    those that an older version counted and ``RUN_IRRELEVANT_KEYS`` now leaves out."""
    keys = set()
    for pairs, other_pairs in zip(settings, other, strict=True):
        mine, theirs = dict(pairs), dict(other_pairs)
        keys |= {key for key in mine.keys() | theirs.keys() if mine.get(key) != theirs.get(key)}
    return sorted(keys - RUN_IRRELEVANT_KEYS)


class RunStateMixin:
    """``MutualDistillTrainer``'s checkpoints and resume: a step runs once, seeded by its position,
    and leaves ``state.pth`` (and ``state_round<t>.pth`` at a round's end) behind."""

    def _run_step(self, name, step, ends_round=None):
        if name in self.finished_steps:
            self.logger.info(f"LLMD4Rec step {name}: finished in an earlier run, skipped")
            return
        # each rank of several processes draws its own dropout and negatives (one process: rank 0)
        init_seed(self.config["seed"] + len(self.finished_steps) + global_rank(self.config), self.config["reproducibility"])
        step()
        self.finished_steps.append(name)
        if writes_files(self.config):
            self._record_step(name, ends_round)
        barrier(self.config)  # no rank goes on before the step is recorded: a kill from here resumes after it

    def _record_step(self, name, ends_round):
        state = {
            "finished_steps": list(self.finished_steps),
            "rows": self.report.rows,
            "llm_phase_record": list(self.llm_phase_record),
            "phases": list(self.phases),
            "crm": self.crm.state_dict(),
            "llm": self.llm.state_dict(),
        }
        if ends_round is not None:  # before state.pth, which marks the step finished
            atomic_torch_save({**state, "round": ends_round, "settings": self._settings()},
                              self.run_dir / ROUND_STATE_FILE.format(ends_round))
        atomic_torch_save(state, self.state_file)
        for phase_file in self._phase_files(name):  # the step is finished: its phase's files are not needed
            phase_file.unlink(missing_ok=True)

    def _phase_files(self, name):
        """The best epoch's weights and the training state of phase ``name`` while it is unfinished."""
        return self.run_dir / f"{name}_best.pth", self.run_dir / f"{name}_training.pth"

    def _settings(self):
        return run_settings(self.config, self.crm_config, self.llm_config)

    def _resume(self):
        """Continue this run after its last finished step, or start from ``start_state``."""
        if rank0_sees(self.state_file, self.config):
            state = load_checkpoint(self.state_file, RUN_STATE_KEYS, "an LLMD4Rec run state (delete it to start over)")
            origin = f"resuming {self.run_dir}"
        elif self.config["start_state"]:
            state = self._start_state(self.config["start_state"])
            origin = f"starting from {self.config['start_state']}"
        else:
            return
        self.crm.load_state_dict(state["crm"])
        self.llm.load_state_dict(state["llm"])
        self.finished_steps = list(state["finished_steps"])
        self.report = RoundReport(state["rows"])
        self.llm_phase_record = tuple(state["llm_phase_record"])
        self.phases = list(state.get("phases", []))  # absent from states written before phase curves
        self.logger.info(f"LLMD4Rec: {origin} after {self.finished_steps[-1]}")

    def _start_state(self, path):
        """Another run's state after round t, checked to come from the same settings up to round t."""
        state = load_checkpoint(path, ROUND_STATE_KEYS, "an LLMD4Rec round state (a run's state_round<t>.pth)")
        kept_round = state["round"]
        if kept_round > self.config["mutual_rounds"]:
            raise LLMD4RecError(f"start_state {path} holds round {kept_round}, beyond this run's mutual_rounds "
                                f"({self.config['mutual_rounds']}): give the state of round "
                                f"{self.config['mutual_rounds']} or earlier")
        shaping = [key for key in differing_settings(state["settings"], self._settings())
                   if FIRST_ROUND_READING.get(key, 0) <= kept_round]
        if shaping:
            raise LLMD4RecError(
                f"start_state {path} comes from a run whose rounds 0-{kept_round} had other settings "
                f"({', '.join(shaping)}): give the state of a run with the same settings, or drop start_state"
            )
        return state
