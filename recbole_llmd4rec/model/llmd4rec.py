"""LLMD4Rec: the pair of models that teach each other (arXiv 2505.18120, Sec. 4, Algorithm 1).

This class holds the two recommenders over one RecBole data set: ``crm``, a SASRecD
(Eq. 6-9), and ``llm``, an E4SRec (Eq. 1-5). It trains nothing itself: the
``MutualDistillTrainer`` runs Algorithm 1 on it. Its scores are the CRM's, the model that
is deployed (LLMD4Rec_C); ``llm`` gives LLMD4Rec_L.

Each part's config is what ``--model=SASRecD`` / ``--model=E4SRec`` would get from the same
user inputs, with the ``crm:`` / ``llm:`` sections of the LLMD4Rec config on top.
"""

import torch
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType

from recbole_llmd4rec.atomic import check_dataset_identity, dataset_identity, load_checkpoint
from recbole_llmd4rec.distillers import DISTILLERS
from recbole_llmd4rec.errors import ConfigError, LLMD4RecError, first_reason
from recbole_llmd4rec.model.e4srec import E4SRec
from recbole_llmd4rec.model.sasrecd import SASRecD, read_crm_checkpoint

class LLMD4Rec(SequentialRecommender):
    """SASRecD (``crm``) and E4SRec (``llm``) over the same data set."""

    input_type = InputType.POINTWISE
    # section of the config -> the model it overrides; Config reads this to know the parts' keys
    PARTS = {"crm": "SASRecD", "llm": "E4SRec"}

    @staticmethod
    def check_settings(config):
        """What the model reads (its parts' sections and the distiller whose parts the CRM gets),
        and each part's own keys, refused before the data set loads."""
        for section in ("crm", "llm"):
            if not isinstance(config[section] or {}, dict):
                raise ConfigError(f"'{section}' must be a dict of overrides, got {config[section]!r}")
        if config["distiller"] not in DISTILLERS:
            raise ConfigError(f"distiller must be one of {', '.join(DISTILLERS)}; got {config['distiller']!r}")
        SASRecD.check_settings(config.for_model(LLMD4Rec.PARTS["crm"], config["crm"]))
        E4SRec.check_settings(config.for_model(LLMD4Rec.PARTS["llm"], config["llm"]))

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.check_settings(config)
        self.crm_config = config.for_model(self.PARTS["crm"], config["crm"])
        self.llm_config = config.for_model(self.PARTS["llm"], config["llm"])
        self.crm = SASRecD(self.crm_config, dataset)
        if config["crm_checkpoint"]:
            self.load_crm_checkpoint(config["crm_checkpoint"], dataset)
        self.llm = E4SRec(self.llm_config, dataset)
        if config["llm_checkpoint"]:
            self.load_llm_checkpoint(config["llm_checkpoint"], dataset)
        self.crm.add_distiller_parts(config["distiller"], self.llm.width)
        self.llm.add_distiller_parts(config["distiller"], self.crm.hidden_size)

    def load_crm_checkpoint(self, path, dataset):
        """Start from a trained SASRec/SASRecD checkpoint of this data set (skips pretraining)."""
        state = read_crm_checkpoint(path, dataset)
        try:
            self.crm.load_state_dict(state)
        except RuntimeError as exc:
            raise LLMD4RecError(
                f"crm_checkpoint {path} does not fit this data set's SASRec (another data set or size?): "
                f"{first_reason(exc)}"
            ) from None

    def load_llm_checkpoint(self, path, dataset):
        """Start E4SRec from a trained E4SRec RecBole checkpoint of this data set and LLM."""
        checkpoint = load_checkpoint(str(path))
        check_dataset_identity(checkpoint, dataset_identity(dataset), path, "llm_checkpoint")
        try:
            self.llm.load_state_dict(checkpoint["state_dict"])
        except RuntimeError as exc:
            raise LLMD4RecError(
                f"llm_checkpoint {path} does not fit this data set's E4SRec (another data set or LLM?): "
                f"{first_reason(exc)}"
            ) from None

    def calculate_loss(self, interaction):
        raise LLMD4RecError("LLMD4Rec trains through MutualDistillTrainer, not a plain RecBole Trainer")

    def predict(self, interaction):
        return self.crm.predict(interaction)

    def full_sort_predict(self, interaction):
        return self.crm.full_sort_predict(interaction)

    @torch.no_grad()
    def update_llm_item_embeddings(self):
        """Algorithm 1, step 3a: the LLM's E <- the CRM's current item embeddings."""
        self.llm.set_item_embeddings(self.crm.item_embedding.weight)
