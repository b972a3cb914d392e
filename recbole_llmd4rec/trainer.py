"""Trainers of the plugin. ``get_trainer`` picks ``<Model>Trainer`` from here first."""

import copy
import os

import torch
from recbole.trainer import S3RecTrainer as RecBoleS3RecTrainer
from recbole.trainer import Trainer
from recbole.utils import set_color

from recbole_llmd4rec.errors import ConfigError


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


class E4SRecTrainer(Trainer):
    """RecBole's trainer with gradient accumulation: ``train_batch_size`` sequences per step,
    ``micro_batch_size`` per forward pass (the paper's total batch of 128 on small memory)."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.micro_batch_size = config["micro_batch_size"]
        if not isinstance(self.micro_batch_size, int) or self.micro_batch_size < 1:
            raise ConfigError(f"micro_batch_size must be a positive int, got {self.micro_batch_size!r}")

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        loss_func = accumulate_over_micro_batches(loss_func or self.model.calculate_loss, self.micro_batch_size)
        return super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)


class S3RecTrainer(RecBoleS3RecTrainer):
    """RecBole's S3Rec trainer, able to pre-train and fine-tune in one run.

    With ``train_stage: pretrain`` and ``finetune_after_pretrain: True`` (the plugin's
    default, so that S3Rec runs as a baseline from one command), ``fit`` pre-trains for
    ``pretrain_epochs`` (``None``: as many as ``epochs``), saves the pre-trained model,
    then builds the fine-tuning S3Rec from that file exactly as RecBole's two-command
    recipe does (``train_stage: finetune``, ``pre_model_path``) and fine-tunes it with
    early stopping. Any other setting behaves as RecBole's trainer.
    """

    def __init__(self, config, model):
        super().__init__(config, model)
        if self.pretrain_epochs is None:
            self.pretrain_epochs = config["epochs"]

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        if self.model.train_stage != "pretrain" or not self.config["finetune_after_pretrain"]:
            return super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)

        self.pretrain(train_data, verbose, show_progress)
        pretrained_file = os.path.join(
            self.checkpoint_dir, f"{self.config['model']}-{self.config['dataset']}-{self.pretrain_epochs}.pth"
        )
        self.save_pretrained_model(self.pretrain_epochs - 1, pretrained_file)
        if verbose:
            self.logger.info(set_color("Pre-trained model saved", "blue") + f": {pretrained_file}; fine-tuning")

        finetune_config = copy.deepcopy(self.config)
        finetune_config["train_stage"] = "finetune"
        finetune_config["pre_model_path"] = pretrained_file
        finetune_model = type(self.model)(finetune_config, train_data._dataset).to(finetune_config["device"])
        # A fresh trainer state (optimizer, early stopping, checkpoint name) for stage two.
        self.__init__(finetune_config, finetune_model)
        return super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)
