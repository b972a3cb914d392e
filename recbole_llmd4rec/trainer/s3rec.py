"""RecBole's S3Rec trainer, pre-training then fine-tuning in one run, resumable."""

import copy
import os
import time

from recbole.trainer import S3RecTrainer as RecBoleS3RecTrainer
from recbole.utils import set_color

from recbole_llmd4rec.atomic import replacing
from recbole_llmd4rec.distributed import barrier, writes_files
from recbole_llmd4rec.trainer.resumable import ResumableTrainer


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
            if writes_files(self.config):
                pretrain_state.unlink(missing_ok=True)
            return result

        pretrained_file = os.path.join(
            self.checkpoint_dir, f"{self.config['model']}-{self.config['dataset']}-{self.pretrain_epochs}.pth"
        )
        self.save_pretrained_model(self.pretrain_epochs - 1, pretrained_file)
        if verbose:
            self.logger.info(set_color("Pre-trained model saved", "blue") + f": {pretrained_file}; fine-tuning")
        earlier_seconds = self.earlier_seconds  # pre-training time spent by killed runs before this one
        barrier(self.config)  # every rank builds the fine-tuning model from the file rank 0 wrote

        finetune_config = copy.deepcopy(self.config)
        finetune_config["train_stage"] = "finetune"
        finetune_config["pre_model_path"] = pretrained_file
        finetune_model = type(self.model)(finetune_config, train_data._dataset).to(finetune_config["device"])
        # A fresh trainer state (optimizer, early stopping, checkpoint and resume names) for stage two,
        # whose clock goes on from the pre-training's.
        self.__init__(finetune_config, finetune_model)
        self.earlier_seconds, self.clock_started = earlier_seconds, started
        result = super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)
        if writes_files(self.config):
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
        if writes_files(self.config):
            with replacing(saved_model_file) as temporary:
                super().save_pretrained_model(epoch, temporary)
        self.saved_model_file = saved_model_file
