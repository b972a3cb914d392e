"""One student trained to early stopping: with a teacher store its loss reads the teacher's
targets per batch, with micro batches its gradients accumulate; E4SRec alone is such a phase."""

from logging import getLogger

import torch

from recbole_llmd4rec.config import require_int
from recbole_llmd4rec.distributed import several
from recbole_llmd4rec.errors import ConfigError
from recbole_llmd4rec.teacher import INSTANCE_ID
from recbole_llmd4rec.trainer.resumable import ResumableTrainer


def accumulate_over_micro_batches(loss_func, micro_batch_size, then=None):
    """Wrap ``loss_func`` so one RecBole batch is computed in micro batches.

    Each micro batch's loss, scaled by its share of the batch, is back-propagated at once,
    so only one micro batch's activations are alive; the summed gradients equal those of the
    whole batch's mean loss. RecBole's ``_train_epoch`` then calls ``backward`` on the
    returned value, a detached leaf carrying the batch loss for logging and the NaN check,
    which adds no gradient, and takes its optimizer step as usual. ``then`` runs after the micro
    batches' backward passes (several processes: it arms DDP's gradient reduction, so RecBole's last
    backward reduces the summed gradients once).
    """

    def loss_in_micro_batches(interaction):
        batch_size = len(interaction)
        total = 0.0
        for start in range(0, batch_size, micro_batch_size):
            micro_batch = interaction[start : start + micro_batch_size]
            loss = loss_func(micro_batch) * (len(micro_batch) / batch_size)
            loss.backward()
            total += loss.detach()
        if then is not None:
            then()
        return total.clone().requires_grad_(True)

    return loss_in_micro_batches


def refuse_scaler_with_micro_batches(config):
    """RecBole 1.2.1's epoch loop owns its GradScaler: it would unscale (divide by 2**16) the
    gradients that the micro batches back-propagated unscaled."""
    if config["enable_scaler"]:
        raise ConfigError("enable_scaler does not work with E4SRec's micro batches: set enable_scaler: False "
                          "(for half precision on GPU use llm_dtype: bfloat16, which needs no scaler)")


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

    def set_reduce_hook(self):
        # Several processes, micro batches: armed before the first micro batch, DDP would reduce that
        # micro batch's gradients alone; it is armed after the last one instead (_train_epoch).
        if not self.micro_batch_size:
            super().set_reduce_hook()

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        loss_func = loss_func or self._student_loss
        if self.micro_batch_size:
            arm_reduction = super().set_reduce_hook if several(self.config) else None
            loss_func = accumulate_over_micro_batches(loss_func, self.micro_batch_size, then=arm_reduction)
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
