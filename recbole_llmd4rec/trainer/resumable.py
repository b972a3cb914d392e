"""RecBole's Trainer made resumable: atomic checkpoints and a training state after every
validated epoch, from which a killed ``fit`` continues to the result an uninterrupted run gives."""

import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from recbole.utils import set_color

from recbole_llmd4rec.atomic import atomic_torch_save, load_checkpoint, replacing
from recbole_llmd4rec.distributed import from_every_rank, global_rank, rank0_sees, several, writes_files
from recbole_llmd4rec.errors import LLMD4RecError, first_reason
from recbole_llmd4rec.trainer.ranks import RankGatheringTrainer
from recbole_llmd4rec.trainer.run_state import run_fingerprint


RESUME_KEYS = ("fingerprint", "epoch", "model", "optimizer", "rng")  # what a resume file holds


class ResumableTrainer(RankGatheringTrainer):
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
        return writes_files(self.config)

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
        if self.resumed or not rank0_sees(self.resume_file, self.config):
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
        # several processes keep every rank's generators, in rank order (the settings fix the world size)
        set_random_states(state["rng"][global_rank(self.config)] if several(self.config) else state["rng"], train_data)
        self.resumed = True
        self.logger.info(f"resuming training from {self.resume_file} at epoch {self.start_epoch}")
        return True

    @property
    def finished_training(self):
        """Whether the state ``resume`` loaded leaves no epoch to train."""
        return self.resumed and self.start_epoch >= self.epochs

    def _save_training_state(self, epoch_idx, train_data):
        rng = random_states(train_data)
        if several(self.config):  # each rank continues with its own generators (dropout, negatives)
            rng = from_every_rank(rng, self.config)
        if not self._writes_files:
            return
        atomic_torch_save({
            "fingerprint": self.run_fingerprint, "epoch": epoch_idx, "cur_step": self.cur_step,
            "best_valid_score": self.best_valid_score, "best_valid_result": self.best_valid_result,
            "train_loss_dict": self.train_loss_dict, "saved_model_name": os.path.basename(self.saved_model_file),
            "valid_curve": self.valid_curve, "best_epoch": self.best_epoch, "start_valid_score": self.start_valid_score,
            "seconds": self.earlier_seconds + time.time() - self._fit_started,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "rng": rng,
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
        if not self.keeps_training_state and self._writes_files:
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
