"""Trainers of the plugin. ``get_trainer`` picks ``<Model>Trainer`` from here first.

- ``ResumableTrainer``: RecBole's Trainer with atomic checkpoints and a training state saved
  after every validated epoch, from which a killed ``fit`` continues; what ``get_trainer``
  gives the models RecBole trains with its ``Trainer`` (SASRec, GRU4Rec, SASRecD, ...).
- ``PhaseTrainer``: the ResumableTrainer for one student, optionally with a teacher store
  (teacher logits looked up per batch) and gradient accumulation over micro batches.
- ``E4SRecTrainer``: the PhaseTrainer E4SRec gets alone (micro batches, no teacher).
- ``MutualDistillTrainer`` (``--model=LLMD4Rec``): Algorithm 1 of LLMD4Rec, resumable.
- ``S3RecTrainer``: RecBole's S3Rec trainer, pre-training then fine-tuning in one run, resumable.
"""

import copy
import hashlib
import math
import os
import random
import time
from logging import getLogger
from pathlib import Path

import numpy as np
import torch

from recbole.data.utils import create_samplers, get_dataloader
from recbole.trainer import AbstractTrainer, Trainer
from recbole.trainer import S3RecTrainer as RecBoleS3RecTrainer
from recbole.utils import calculate_valid_score, dict2str, init_seed, set_color

from recbole_llmd4rec.atomic import atomic_torch_save, files_sha256, load_checkpoint, replacing, write_json_atomically
from recbole_llmd4rec.config import require_int
from recbole_llmd4rec.distillers import ONE_WAY_DISTILLERS, make_distiller
from recbole_llmd4rec.errors import ConfigError, LLMD4RecError, first_reason
from recbole_llmd4rec.export import export_item_embeddings, export_sasrec_checkpoint
from recbole_llmd4rec.report import RoundReport
from recbole_llmd4rec.teacher import INSTANCE_ID, TeacherStore, add_instance_ids


def accumulate_over_micro_batches(loss_func, micro_batch_size):
    """Wrap ``loss_func`` so one RecBole batch is computed in micro batches.

    Each micro batch's loss, scaled by its share of the batch, is back-propagated at once,
    so only one micro batch's activations are alive; the summed gradients equal those of the
    whole batch's mean loss. RecBole's ``_train_epoch`` then calls ``backward`` on the
    returned value, a detached leaf carrying the batch loss for logging and the NaN check,
    which adds no gradient, and takes its optimizer step as usual.
    """

    def loss_in_micro_batches(interaction):
        batch_size = len(interaction)
        total = 0.0
        for start in range(0, batch_size, micro_batch_size):
            micro_batch = interaction[start : start + micro_batch_size]
            loss = loss_func(micro_batch) * (len(micro_batch) / batch_size)
            loss.backward()
            total += loss.detach()
        return total.clone().requires_grad_(True)

    return loss_in_micro_batches


def refuse_scaler_with_micro_batches(config):
    """RecBole 1.2.1's epoch loop owns its GradScaler: it would unscale (divide by 2**16) the
    gradients that the micro batches back-propagated unscaled."""
    if config["enable_scaler"]:
        raise ConfigError("enable_scaler does not work with E4SRec's micro batches: set enable_scaler: False "
                          "(for half precision on GPU use llm_dtype: bfloat16, which needs no scaler)")


RESUME_KEYS = ("fingerprint", "epoch", "model", "optimizer", "rng")  # what a resume file holds


class ResumableTrainer(Trainer):
    """RecBole's Trainer, whose ``fit`` survives being killed: checkpoints are written
    atomically, and after every validated epoch the whole training state (weights, optimizer,
    early-stopping counters, loss history, every random generator including the train loader's
    shuffle) goes to ``resume_file``. ``fit`` continues from that file when it exists and was
    written by the same settings, and deletes it when training ends (unless the caller keeps it
    until the result is stored: ``keeps_training_state``), so a rerun of a killed command reaches
    the same result as an uninterrupted run. The plugin's trainers build on it,
    and ``get_trainer`` gives it to the RecBole models that use RecBole's ``Trainer``.
    """

    def __init__(self, config, model, saved_model_file=None, resume_file=None):
        super().__init__(config, model)
        if saved_model_file is not None:
            self.saved_model_file = str(saved_model_file)
        # RecBole names the best-model file by the time of day; the resume file needs a name a
        # rerun of the same settings finds again.
        self.run_fingerprint = run_fingerprint(config)
        self.resume_file = Path(resume_file or Path(self.checkpoint_dir) / (
            f"{config['model']}-{config['dataset']}-{self.run_fingerprint}.resume.pth"))
        self.resumed = False
        self.earlier_seconds = 0.0  # training time of the interrupted run(s) this fit continues
        # When the timed work began; a caller that does work of its own before fit (a phase's
        # teacher store and starting evaluation) sets it, so a resumed run's time includes that.
        self.clock_started = None
        self._fit_started = None
        # A caller that stores the result itself later keeps the finished state until then: a
        # rerun killed in between finds the training done instead of starting it over.
        self.keeps_training_state = False
        self.valid_curve = {}  # epoch -> validation score, every validated epoch of this fit
        self.start_valid_score = None  # the weights' score before the first epoch, where a caller measured it
        self.best_epoch = None  # the epoch whose weights early stopping keeps; None: none beat the start

    @property
    def _writes_files(self):
        return self.config["single_spec"] or self.config["local_rank"] == 0  # RecBole's rule

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self._writes_files:
            return
        target = kwargs.pop("saved_model_file", self.saved_model_file)
        with replacing(target) as temporary:
            super()._save_checkpoint(epoch, verbose=False, saved_model_file=temporary, **kwargs)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {target}")

    def _start_clock(self):
        self._fit_started = time.time() if self.clock_started is None else self.clock_started

    def resume(self, train_data):
        """Continue an interrupted ``fit`` from ``resume_file`` if it holds these settings'
        state; returns whether it did. ``fit`` calls it; call it first to know beforehand."""
        if self.resumed or not self.resume_file.is_file():
            return self.resumed
        start_over = f"delete {self.resume_file} to start this training over"
        try:
            state = load_checkpoint(self.resume_file, RESUME_KEYS, "a training state")
        except LLMD4RecError as exc:
            raise LLMD4RecError(f"{exc}; {start_over}") from None
        if state["fingerprint"] != self.run_fingerprint:
            raise LLMD4RecError(f"the training state was written with other settings; {start_over}")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise LLMD4RecError(f"the training state does not fit this model ({first_reason(exc)}); "
                                f"{start_over}") from None
        self.cur_step = state["cur_step"]
        # Killed after early stopping had decided to stop: nothing is left to train.
        self.start_epoch = self.epochs if self.cur_step > self.stopping_step else state["epoch"] + 1
        self.best_valid_score = state["best_valid_score"]
        self.best_valid_result = state["best_valid_result"]
        self.train_loss_dict = dict(state["train_loss_dict"])
        self.valid_curve = dict(state.get("valid_curve", {}))  # absent from states written before curves
        self.best_epoch = state.get("best_epoch")
        self.start_valid_score = state.get("start_valid_score")
        # The best epoch's file, by name: RecBole's names carry the time the first run began.
        self.saved_model_file = os.path.join(os.path.dirname(self.saved_model_file), state["saved_model_name"])
        self.earlier_seconds = state["seconds"]
        set_random_states(state["rng"], train_data)
        self.resumed = True
        self.logger.info(f"resuming training from {self.resume_file} at epoch {self.start_epoch}")
        return True

    @property
    def finished_training(self):
        """Whether the state ``resume`` loaded leaves no epoch to train."""
        return self.resumed and self.start_epoch >= self.epochs

    def _save_training_state(self, epoch_idx, train_data):
        if not self._writes_files:
            return
        atomic_torch_save({
            "fingerprint": self.run_fingerprint, "epoch": epoch_idx, "cur_step": self.cur_step,
            "best_valid_score": self.best_valid_score, "best_valid_result": self.best_valid_result,
            "train_loss_dict": self.train_loss_dict, "saved_model_name": os.path.basename(self.saved_model_file),
            "valid_curve": self.valid_curve, "best_epoch": self.best_epoch, "start_valid_score": self.start_valid_score,
            "seconds": self.earlier_seconds + time.time() - self._fit_started,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "rng": random_states(train_data),
        }, self.resume_file)

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self._start_clock()
        self.resume(train_data)
        if self.finished_training:
            # Killed after its last epoch: RecBole's fit would save the current weights over the
            # best epoch's file, so the result is returned here.
            self._training_done()
            return self.best_valid_score, self.best_valid_result

        def after_validation(epoch_idx, valid_score):
            self.valid_curve[epoch_idx] = float(valid_score)
            if self.cur_step == 0:  # RecBole's early stopping just kept this epoch
                self.best_epoch = epoch_idx
            self._save_training_state(epoch_idx, train_data)
            if callback_fn:
                callback_fn(epoch_idx, valid_score)

        result = super().fit(train_data, valid_data, verbose, saved, show_progress, after_validation)
        self._training_done()
        return result

    def _training_done(self):
        if not self.keeps_training_state:
            self.resume_file.unlink(missing_ok=True)


def random_states(train_data):
    """Every random generator training draws from: Python's, numpy's, torch's (CPU and CUDA)
    and the train loader's own shuffle generator."""
    # numpy's key as a list: checkpoints are read with an allow-list that has no numpy arrays
    name, key, position, has_gauss, cached_gaussian = np.random.get_state()
    return {"python": random.getstate(), "numpy": (name, key.tolist(), position, has_gauss, cached_gaussian),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "loader": train_data.generator.get_state()}


def set_random_states(states, train_data):
    random.setstate(states["python"])
    name, key, position, has_gauss, cached_gaussian = states["numpy"]
    np.random.set_state((name, np.array(key, dtype=np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    train_data.generator.set_state(states["loader"])


def phase_record(name, trainer, start_is_candidate):
    """What a run keeps of one phase (a ResumableTrainer's finished fit): the validation score
    of the weights it started from, every trained epoch's, and the epoch whose weights it kept
    ("start" when the start was a candidate and no epoch beat it), so a reading of the run can
    be checked against its curves."""
    return {"phase": name, "start_valid_score": trainer.start_valid_score, "start_is_candidate": start_is_candidate,
            "valid_curve": [[epoch, score] for epoch, score in sorted(trainer.valid_curve.items())],
            "chosen_epoch": "start" if trainer.best_epoch is None else trainer.best_epoch}


class TrainingLossIsNaN(ValueError):
    """RecBole's NaN check (a ValueError), as a type of its own that callers can catch."""


class PhaseTrainer(ResumableTrainer):
    """RecBole's Trainer for one student; with a ``teacher`` store its loss gets the
    teacher's logits for the batch, and with ``micro_batch_size`` gradients accumulate."""

    def __init__(self, config, model, teacher=None, micro_batch_size=None, saved_model_file=None, resume_file=None):
        if micro_batch_size:
            refuse_scaler_with_micro_batches(config)
        super().__init__(config, model, saved_model_file, resume_file)
        self.teacher = teacher
        self.micro_batch_size = micro_batch_size

    def _check_nan(self, loss):
        if torch.isnan(loss):
            raise TrainingLossIsNaN("Training loss is nan")

    def _student_loss(self, interaction):
        if self.teacher is None:
            return self.model.calculate_loss(interaction)
        teacher_targets = self.teacher.lookup(interaction[INSTANCE_ID], self.device)
        return self.model.calculate_loss(interaction, teacher=teacher_targets)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        loss_func = loss_func or self._student_loss
        if self.micro_batch_size:
            loss_func = accumulate_over_micro_batches(loss_func, self.micro_batch_size)
        return super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)


class E4SRecTrainer(PhaseTrainer):
    """E4SRec alone: ``train_batch_size`` sequences per step, ``micro_batch_size`` per pass
    (the paper's total batch of 128 on small memory)."""

    @staticmethod
    def check_settings(config):
        """Its own keys, refused before the data set loads."""
        require_int(config, "micro_batch_size", 1)
        refuse_scaler_with_micro_batches(config)

    def __init__(self, config, model):
        super().__init__(config, model, micro_batch_size=require_int(config, "micro_batch_size", 1))
        if not model.has_crm_embeddings:
            getLogger().warning(
                "E4SRec item embeddings are random: set crm_checkpoint to a trained SASRec/SASRecD checkpoint"
            )


DIRECTIONS = ("both", "crm_to_llm", "llm_to_crm")  # who teaches whom (crm_to_llm: the CRM stays as pretrained)
TEACHER_STORES = ("full", "topk")  # what the KL reads of a teacher: every item, or its top K

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
                       "teacher_memory_gib"}  # where the teacher store lives, not what it holds


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
    return [sorted((k, setting_value(k, v)) for k, v in c.final_config_dict.items() if k not in RUN_IRRELEVANT_KEYS)
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


class MutualDistillTrainer(AbstractTrainer):
    """Algorithm 1 of LLMD4Rec on an ``LLMD4Rec`` model (``crm``: SASRecD, ``llm``: E4SRec).

    Each phase trains its student to early stopping on the validation metric (RecBole's
    ``stopping_step``) and keeps its best trained epoch ("train until convergence"); with
    ``phase_start_is_candidate`` the weights the phase started from count as a candidate too,
    so a phase whose teacher does not help leaves its student as it was. Every phase's start
    score, validation curve and chosen epoch go to ``phases.json``. A phase whose distillation
    weight is 0 builds no teacher store: it is the no-teacher control of that phase.

    Every step below is one checkpointed unit: after it finishes, both models, the round
    table and the list of finished steps are written atomically to ``state.pth`` in the
    run's folder. Rerunning the same command resumes after the last finished step and,
    as every step starts from a seed of its own, ends with the same table. The state after
    each round t is kept as ``state_round<t>.pth``, with the settings that shaped it: a run
    whose settings differ only in what later rounds read (``FIRST_ROUND_READING``: more
    rounds, no embedding update) can start from it (``start_state``) instead of repeating
    rounds 0..t, and ends as it would have from scratch.
    """

    needs_test_data = True

    def __init__(self, config, model):
        super().__init__(config, model)
        self.logger = getLogger()
        self.device = config["device"]
        self.crm, self.llm = model.crm, model.llm
        self.crm_config, self.llm_config = model.crm_config, model.llm_config
        self.micro_batch_size = require_int(self.llm_config, "micro_batch_size", 1)
        refuse_scaler_with_micro_batches(self.llm_config)  # before round 0, not after it
        self.check_settings(config)
        self.run_dir = Path(config["checkpoint_dir"]) / (
            f"LLMD4Rec-{config['dataset']}-{run_fingerprint(config, self.crm_config, self.llm_config)}"
        )
        self.state_file = self.run_dir / "state.pth"
        self.report = RoundReport()
        self.finished_steps = []
        self.teacher_passes = {}  # phase name -> teacher forward batches (one pass per phase)
        self.llm_phase_record = (0.0, 0)  # (seconds, epochs) of the round's LLM phase, for its table rows
        self.phases = []  # phase_record of every finished phase, in training order
        self.saved_model_file = str(self.run_dir / "sasrec_distilled.pth")
        self.crm_evaluator = Trainer(self.crm_config, self.crm)
        self.llm_evaluator = Trainer(self.llm_config, self.llm)

    @staticmethod
    def check_settings(config):
        """The trainer's own keys, refused before the data set loads (quick_start calls this first)."""
        require_int(config, "mutual_rounds", 1, " (paper: 2)")
        require_int(config, "teacher_batch_size", 1)
        if config["directions"] not in DIRECTIONS:
            raise ConfigError(f"directions must be one of {', '.join(DIRECTIONS)}; got {config['directions']!r}")
        if config["distiller"] in ONE_WAY_DISTILLERS and config["directions"] != "llm_to_crm":
            raise ConfigError(
                f"distiller {config['distiller']} distils the LLM into the CRM only: set directions: llm_to_crm"
            )
        if config["teacher_store"] not in TEACHER_STORES:
            raise ConfigError(f"teacher_store must be one of {', '.join(TEACHER_STORES)}; "
                              f"got {config['teacher_store']!r}")
        if config["teacher_store"] == "topk":
            require_int(config, "teacher_topk", 1)
        memory = config["teacher_memory_gib"]
        if isinstance(memory, bool) or not isinstance(memory, (int, float)) or memory < 0:
            raise ConfigError(f"teacher_memory_gib must be a number >= 0 (GiB), got {memory!r}")
        for key in ("phase_start_is_candidate", "embedding_update"):
            if not isinstance(config[key], bool):
                raise ConfigError(f"{key} must be True or False, got {config[key]!r}")

    # ---- Algorithm 1 ------------------------------------------------------------------
    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False,
            callback_fn=None, test_data=None):
        if valid_data is None or test_data is None:
            raise LLMD4RecError("MutualDistillTrainer.fit needs valid_data and test_data")
        self.train_dataset, self.valid_data, self.test_data = train_data._dataset, valid_data, test_data
        self.show_progress = show_progress
        add_instance_ids(self.train_dataset)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._resume()
        config = self.config

        # Step 1: pretrain the CRM alone (or take crm_checkpoint), then evaluate it: round 0.
        self._run_step("round0_crm", self._pretrain_crm, ends_round=0)
        # Step 2 (initialise E4SRec from the CRM's item embeddings) happens in round 1's step 3a.
        for t in range(1, config["mutual_rounds"] + 1):
            # Step 3a: embedding update; step 3b: LLM phase with the frozen CRM as teacher.
            self._run_step(f"round{t}_llm", lambda t=t: self._llm_phase(t))
            # Step 3c: CRM phase with the frozen LLM as teacher; step 3d: evaluate both.
            self._run_step(f"round{t}_crm", lambda t=t: self._crm_phase(t), ends_round=t)

        # Step 4: keep both models.
        self._export()
        self.logger.info(set_color("LLMD4Rec rounds", "yellow") + "\n" + self.report.table())
        final_round = config["mutual_rounds"]
        best_valid_result = self.report.result(final_round, "CRM", "valid")
        return best_valid_result[config["valid_metric"].lower()], best_valid_result

    def _pretrain_crm(self):
        if self.config["crm_checkpoint"]:
            seconds, epochs = 0.0, 0  # loaded by LLMD4Rec from crm_checkpoint
        else:
            seconds, epochs = self._train_phase("round0_crm", self.crm, self.crm_config, teacher=None)
        self._evaluate_round(0, "CRM", seconds, epochs)

    def _llm_phase(self, t):
        directions = self.config["directions"]
        learns_from_crm = directions in ("both", "crm_to_llm")
        # llm_to_crm: E4SRec is trained once, on its own loss, to become the teacher (not at
        # all when llm_checkpoint gave a trained one); afterwards it stays as it is, E included.
        trains_alone = directions == "llm_to_crm" and t == 1 and not self.config["llm_checkpoint"]
        if (learns_from_crm or trains_alone) and (t == 1 or self.config["embedding_update"]):
            self.model.update_llm_item_embeddings()
        if learns_from_crm:
            self.llm_phase_record = self._train_phase(f"round{t}_llm", self.llm, self.llm_config, teacher=self.crm)
        elif trains_alone:
            self.llm_phase_record = self._train_phase(f"round{t}_llm", self.llm, self.llm_config, teacher=None)
        else:
            self.llm_phase_record = (0.0, 0)

    def _crm_phase(self, t):
        if self.config["directions"] in ("both", "llm_to_crm"):
            distiller = self.config["distiller"]
            if distiller == "dllm2rec":  # its embedding distillation reads the LLM's item vectors
                self.crm.set_teacher_item_embeddings(self.llm.item_representations())
            crm_record = self._train_phase(f"round{t}_crm", self.crm, self.crm_config, teacher=self.llm,
                                           distiller=distiller)
        else:
            crm_record = (0.0, 0)
        self._evaluate_round(t, "LLM", *self.llm_phase_record)
        self._evaluate_round(t, "CRM", *crm_record)

    # ---- one phase: a student trained to early stopping against a frozen teacher ----------
    def _train_phase(self, name, student, student_config, teacher, distiller="llmd4rec"):
        """Train ``student`` to early stopping, learning from ``teacher`` (or alone);
        returns (seconds, epochs). The teacher's store lives only as long as the phase."""
        started = time.time()
        train_loader = self._train_loader(student_config)
        best_file, training_file = self._phase_files(name)
        phase = PhaseTrainer(
            student_config, student,
            micro_batch_size=self.micro_batch_size if student is self.llm else None,
            saved_model_file=best_file, resume_file=training_file,
        )
        phase.clock_started = started
        phase.keeps_training_state = True  # until state.pth marks the step finished (_run_step)
        phase.resume(train_loader)
        if teacher is not None and distiller == "llmd4rec" and self._teacher_weight(student) == 0:
            teacher = None  # the KL's weight is 0: the phase is the no-teacher control, its store unneeded
        # A phase a kill left trained but unrecorded needs no teacher: its store is not built again.
        if teacher is not None and not phase.finished_training:
            topk = self.config["teacher_topk"] if self.config["teacher_store"] == "topk" else None
            phase.teacher = TeacherStore.build(
                teacher, self.train_dataset, self.run_dir / f"{name}_teacher",
                self.config["teacher_batch_size"], self.device,
                make_distiller(distiller, student, student_config, topk),
                memory_limit=int(self.config["teacher_memory_gib"] * 2**30), show_progress=self.show_progress,
            )
            self.teacher_passes[name] = phase.teacher.forward_passes
        self.logger.info(set_color(f"LLMD4Rec phase {name}", "green") +
                         f": {type(student).__name__}, teacher {type(teacher).__name__ if teacher else 'none'}")
        try:
            self._fit_to_early_stopping(name, phase, train_loader)
        finally:
            if phase.teacher is not None:
                phase.teacher.close()
        if os.path.isfile(phase.saved_model_file):  # back to the phase's chosen epoch
            student.load_state_dict(load_checkpoint(phase.saved_model_file)["state_dict"])
        self.phases.append(phase_record(name, phase, self.config["phase_start_is_candidate"]))
        return phase.earlier_seconds + time.time() - started, len(phase.train_loss_dict)

    def _train_loader(self, student_config):
        """RecBole's train loader for a phase's student, with its negative sampler where the
        student's loss samples negatives (a BPR-trained CRM)."""
        sampler = None
        if student_config["train_neg_sample_args"]["distribution"] != "none":
            built = [self.train_dataset, self.valid_data._dataset, self.test_data._dataset]
            sampler = create_samplers(student_config, self.train_dataset, built)[0]
        return get_dataloader(student_config, "train")(
            student_config, self.train_dataset, sampler, shuffle=student_config["shuffle"]
        )

    def _teacher_weight(self, student):
        """The coefficient of the student's KL term: beta (Eq. 9) for the CRM, gamma (Eq. 5) for the LLM."""
        return self.crm_config["distill_beta"] if student is self.crm else self.llm_config["distill_gamma"]

    def _fit_to_early_stopping(self, name, phase, train_loader):
        if not phase.resumed:
            # The start's score is recorded; it is a candidate only under phase_start_is_candidate
            # (a phase then never ends worse on valid than it began). By default a phase's result
            # is its best trained epoch: Algorithm 1 trains each phase to convergence.
            start_result = phase.evaluate(self.valid_data, load_best_model=False, show_progress=self.show_progress)
            phase.start_valid_score = calculate_valid_score(start_result, phase.valid_metric)
            if self.config["phase_start_is_candidate"]:
                phase.best_valid_score = phase.start_valid_score
                phase.best_valid_result = start_result
                phase._save_checkpoint(-1, verbose=False)
        try:
            phase.fit(train_loader, self.valid_data, saved=True, show_progress=self.show_progress)
        except TrainingLossIsNaN:
            raise LLMD4RecError(
                f"phase {name} stopped: the training loss became NaN (the finished steps stay in {self.state_file}); "
                "lower learning_rate or the phase's distillation coefficient and rerun: with other settings it is "
                "a new run, which starts from round 0 unless crm_checkpoint names a trained SASRec"
            ) from None

    def _evaluate_round(self, t, model_name, seconds, epochs):
        evaluator = self.crm_evaluator if model_name == "CRM" else self.llm_evaluator
        for split, data in (("valid", self.valid_data), ("test", self.test_data)):
            result = evaluator.evaluate(data, load_best_model=False, show_progress=self.show_progress)
            self.report.add(t, model_name, split, result, seconds, epochs)
            self.logger.info(f"round {t} {model_name} {split}: {dict2str(result)}")

    # ---- checkpoints and resume ----------------------------------------------------------
    def _run_step(self, name, step, ends_round=None):
        if name in self.finished_steps:
            self.logger.info(f"LLMD4Rec step {name}: finished in an earlier run, skipped")
            return
        init_seed(self.config["seed"] + len(self.finished_steps), self.config["reproducibility"])
        step()
        self.finished_steps.append(name)
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
        if self.state_file.is_file():
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

    # ---- what the run leaves behind ------------------------------------------------------
    def _export(self):
        self.report.write(self.run_dir)
        self.report.plot(str(self.run_dir / "rounds.png"))
        write_json_atomically(self.run_dir / PHASES_FILE, self.phases)
        outputs = ["rounds.csv/json/png", PHASES_FILE, "e4srec/", "item_embeddings.itememb"]
        if self.crm.has_teacher_inputs:
            self.logger.info("no sasrec_distilled.pth: DLLM2Rec's embedding distillation feeds the LLM's item "
                             "vectors into SASRec's inputs, which a plain SASRec checkpoint cannot hold")
        else:
            export_sasrec_checkpoint(self.crm, self.crm_config, self.saved_model_file)
            outputs.append("sasrec_distilled.pth")
        self.llm.save_artifacts(self.run_dir / "e4srec")
        export_item_embeddings(self.crm.item_embedding.weight, self.train_dataset,
                               str(self.run_dir / "item_embeddings.itememb"))
        self.logger.info(f"LLMD4Rec outputs in {self.run_dir}: {', '.join(outputs)}")

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        """The distilled CRM (LLMD4Rec_C) on ``eval_data``."""
        return self.crm_evaluator.evaluate(eval_data, load_best_model=False, show_progress=show_progress)


LLMD4RecTrainer = MutualDistillTrainer  # get_trainer finds trainers as <Model>Trainer


class S3RecTrainer(RecBoleS3RecTrainer, ResumableTrainer):
    """RecBole's S3Rec trainer, able to pre-train and fine-tune in one run, and resumable.

    With ``train_stage: pretrain`` and ``finetune_after_pretrain: True`` (the plugin's
    default, so that S3Rec runs as a baseline from one command), ``fit`` pre-trains for
    ``pretrain_epochs`` (``None``: as many as ``epochs``), saves the pre-trained model,
    then builds the fine-tuning S3Rec from that file exactly as RecBole's two-command
    recipe does (``train_stage: finetune``, ``pre_model_path``) and fine-tunes it with
    early stopping. Any other setting behaves as RecBole's trainer.

    Both stages resume as the ResumableTrainer does: pre-training saves its state after every
    epoch and keeps it until the fine-tuning ends, so a rerun after a kill skips a finished
    pre-training, continues an unfinished one from its next epoch, and continues the
    fine-tuning from its last validated epoch. The reported time covers both stages.
    """

    def __init__(self, config, model):
        super().__init__(config, model)
        if self.pretrain_epochs is None:
            self.pretrain_epochs = config["epochs"]

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        if self.model.train_stage != "pretrain":
            return super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)
        started = time.time()
        self.clock_started = started
        result = self.pretrain(train_data, verbose, show_progress)
        pretrain_state = self.resume_file
        if not self.config["finetune_after_pretrain"]:
            pretrain_state.unlink(missing_ok=True)
            return result

        pretrained_file = os.path.join(
            self.checkpoint_dir, f"{self.config['model']}-{self.config['dataset']}-{self.pretrain_epochs}.pth"
        )
        self.save_pretrained_model(self.pretrain_epochs - 1, pretrained_file)
        if verbose:
            self.logger.info(set_color("Pre-trained model saved", "blue") + f": {pretrained_file}; fine-tuning")
        earlier_seconds = self.earlier_seconds  # pre-training time spent by killed runs before this one

        finetune_config = copy.deepcopy(self.config)
        finetune_config["train_stage"] = "finetune"
        finetune_config["pre_model_path"] = pretrained_file
        finetune_model = type(self.model)(finetune_config, train_data._dataset).to(finetune_config["device"])
        # A fresh trainer state (optimizer, early stopping, checkpoint and resume names) for stage two,
        # whose clock goes on from the pre-training's.
        self.__init__(finetune_config, finetune_model)
        self.earlier_seconds, self.clock_started = earlier_seconds, started
        result = super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)
        pretrain_state.unlink(missing_ok=True)
        return result

    def pretrain(self, train_data, verbose=True, show_progress=False):
        """RecBole's pre-training, continued from ``resume_file`` when a killed run left one."""
        self._start_clock()
        self.resume(train_data)
        return super().pretrain(train_data, verbose, show_progress)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        loss = super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)
        if self.model.train_stage == "pretrain":  # RecBole's pre-training loop has no per-epoch callback
            self.train_loss_dict[epoch_idx] = sum(loss) if isinstance(loss, tuple) else loss
            self._save_training_state(epoch_idx, train_data)
        return loss

    def save_pretrained_model(self, epoch, saved_model_file):
        with replacing(saved_model_file) as temporary:
            super().save_pretrained_model(epoch, temporary)
        self.saved_model_file = saved_model_file
