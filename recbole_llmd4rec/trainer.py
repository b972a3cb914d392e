"""Trainers of the plugin. ``get_trainer`` picks ``<Model>Trainer`` from here first."""

import copy
import os

from recbole.trainer import S3RecTrainer as RecBoleS3RecTrainer
from recbole.utils import set_color


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
