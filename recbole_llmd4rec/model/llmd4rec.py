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

from recbole_llmd4rec.atomic import load_checkpoint
from recbole_llmd4rec.config import require_int
from recbole_llmd4rec.distillers import DISTILLERS, ONE_WAY_DISTILLERS
from recbole_llmd4rec.errors import ConfigError, LLMD4RecError, first_reason
from recbole_llmd4rec.model.e4srec import E4SRec
from recbole_llmd4rec.model.sasrecd import SASRecD

DIRECTIONS = ("both", "crm_to_llm", "llm_to_crm")
TEACHER_STORES = ("full", "topk")


def check_llmd4rec_settings(config):
    """Refuse settings that make no sense, before anything is built or trained."""
    require_int(config, "mutual_rounds", 1, " (paper: 2)")
    require_int(config, "teacher_batch_size", 1)
    if config["directions"] not in DIRECTIONS:
        raise ConfigError(f"directions must be one of {', '.join(DIRECTIONS)}; got {config['directions']!r}")
    if config["distiller"] not in DISTILLERS:
        raise ConfigError(f"distiller must be one of {', '.join(DISTILLERS)}; got {config['distiller']!r}")
    if config["distiller"] in ONE_WAY_DISTILLERS and config["directions"] != "llm_to_crm":
        raise ConfigError(
            f"distiller {config['distiller']} distils the LLM into the CRM only: set directions: llm_to_crm"
        )
    if config["teacher_store"] not in TEACHER_STORES:
        raise ConfigError(f"teacher_store must be one of {', '.join(TEACHER_STORES)}; got {config['teacher_store']!r}")
    if config["teacher_store"] == "topk":
        require_int(config, "teacher_topk", 1)
    memory = config["teacher_memory_gib"]
    if isinstance(memory, bool) or not isinstance(memory, (int, float)) or memory < 0:
        raise ConfigError(f"teacher_memory_gib must be a number >= 0 (GiB), got {memory!r}")
    for section in ("crm", "llm"):
        if not isinstance(config[section] or {}, dict):
            raise ConfigError(f"'{section}' must be a dict of overrides, got {config[section]!r}")


class LLMD4Rec(SequentialRecommender):
    """SASRecD (``crm``) and E4SRec (``llm``) over the same data set."""

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        check_llmd4rec_settings(config)
        self.crm_config = config.for_model("SASRecD", config["crm"])
        self.llm_config = config.for_model("E4SRec", config["llm"])
        self.crm = SASRecD(self.crm_config, dataset)
        if config["crm_checkpoint"]:
            self.load_crm_checkpoint(config["crm_checkpoint"])
        self.llm = E4SRec(self.llm_config, dataset)
        if config["llm_checkpoint"]:
            self.load_llm_checkpoint(config["llm_checkpoint"])
        self.crm.add_distiller_parts(config["distiller"], self.llm.width)

    def load_crm_checkpoint(self, path):
        """Start from a trained SASRec/SASRecD checkpoint of this data set (skips pretraining)."""
        state = load_checkpoint(str(path))["state_dict"]
        try:
            self.crm.load_state_dict(state)
        except RuntimeError as exc:
            raise LLMD4RecError(
                f"crm_checkpoint {path} does not fit this data set's SASRec (another data set or size?): "
                f"{first_reason(exc)}"
            ) from None

    def load_llm_checkpoint(self, path):
        """Start E4SRec from a trained E4SRec RecBole checkpoint of this data set and LLM."""
        try:
            self.llm.load_state_dict(load_checkpoint(str(path))["state_dict"])
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
