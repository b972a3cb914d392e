"""SASRecD: SASRec that can learn from a teacher (the CRM of LLMD4Rec).

Reference: "Bidirectional Knowledge Distillation for Enhancing Sequential Recommendation
with Large Language Models" (LLMD4Rec, arXiv 2505.18120), Sec. 4.3, Eq. 6-9; SASRec
(Kang and McAuley, ICDM 2018) is RecBole's implementation, unchanged.

Without a teacher this *is* RecBole's SASRec: the same parameters under the same names and
the same loss, so a trained SASRecD state dict loads into ``SASRec`` and the distilled model
is deployed at SASRec's inference cost. Given LLMD4Rec's teacher targets for the batch it
minimises Eq. 9:

    L_CRM = L_rec + beta * mean_b( w2_b * KL(softmax(y_l / T2) || softmax(y_c / T2))_b )

where w2 is the sample-wise adaptive weight of Eq. 8 (student = CRM, teacher = LLM) and
L_rec is SASRec's own loss: BPR on the target against one sampled negative (the paper's
"pairwise loss", ``loss_type: BPR``) or cross-entropy over all items (``loss_type: CE``); the
KL reads the scores of every item in both (``Softmax(y_c)``).
The baselines the paper compares with are losses of the same student (``losses.py``):
DLLM2Rec, ``L_rec + lambda * L_rank`` plus its collaborative embedding distillation (the
input item embeddings gain ``w * Linear(teacher item embedding)``), and LEADER,
``L_rec + alpha * MSE(Linear(user state), teacher user state)``. Their extra parts exist only
when the trainer adds them (:meth:`SASRecD.add_distiller_parts`) and never reach the
exported SASRec, except DLLM2Rec's input embeddings, which change the model's inputs.
Histories are computed in length groups (``length_groups``; 0 = RecBole's padded batch),
which changes the work, not the function.
Logits follow RecBole's full-ranking layout, (B, n_items) with column 0 the padding item;
the padding column is left out of the KL and of the ranks.
"""

import torch
from recbole.model.sequential_recommender.sasrec import SASRec
from torch import nn

from recbole_llmd4rec.atomic import check_dataset_identity, dataset_identity, load_checkpoint
from recbole_llmd4rec.config import require_int
from recbole_llmd4rec.errors import ConfigError, LLMD4RecError
from recbole_llmd4rec.losses import (
    PADDING_ITEM, FeatureTargets, RankingTargets, TeacherTargets, distillation_objective, distillation_terms,
    feature_distillation_loss, item_teacher_targets, ranking_distillation_loss, ranking_distillation_weights,
    real_items,
)
from recbole_llmd4rec.model.length_groups import forward_in_length_groups

CRM_EMBEDDING_KEY = "item_embedding.weight"  # SASRec's / SASRecD's item table E in a RecBole checkpoint
NEGATIVE_RESAMPLING_ROUNDS = 10  # a negative that hits the history is redrawn at most this often


# Both models call their temperature distill_temperature; the paper's symbols tell them apart.
# model: (coefficient key, its symbol, the temperature's symbol, direction, LLMD4Rec section)
DISTILLATION_KEYS = {
    "SASRecD": ("distill_beta", "beta", "T2", "LLM -> CRM", "crm"),
    "E4SRec": ("distill_gamma", "gamma", "T1", "CRM -> LLM", "llm"),
}


def check_distillation_settings(config, model):
    """Refuse a non-positive temperature or a negative coefficient of ``model`` (SASRecD or
    E4SRec) before training starts, naming the model and the paper's symbol: both models read
    the key distill_temperature, and an LLMD4Rec run gives each its own value."""
    coefficient_key, coefficient_symbol, temperature_symbol, direction, section = DISTILLATION_KEYS[model]

    def refuse(key, meaning, rule, value):
        raise ConfigError(f"{model}'s {key} ({meaning}) must be {rule}, got {value}; set it in the {section}: "
                          f"section of an LLMD4Rec run, or as {key} when {model} runs alone")

    if config["distill_temperature"] <= 0:
        refuse("distill_temperature", f"{temperature_symbol}, the {direction} temperature", "> 0",
               config["distill_temperature"])
    if config[coefficient_key] < 0:
        refuse(coefficient_key, f"{coefficient_symbol}, the weight of the {direction} distillation", ">= 0",
               config[coefficient_key])


def read_crm_checkpoint(path, dataset):
    """The state dict of a SASRec/SASRecD RecBole checkpoint (``crm_checkpoint``) trained on
    ``dataset``: the one place that file is read, for the CRM that starts from it and the E4SRec
    that takes its E."""
    checkpoint = load_checkpoint(str(path))
    check_dataset_identity(checkpoint, dataset_identity(dataset), path, "crm_checkpoint")
    state = checkpoint["state_dict"]
    if CRM_EMBEDDING_KEY not in state:
        raise LLMD4RecError(f"crm_checkpoint {path} has no '{CRM_EMBEDDING_KEY}': not a SASRec/SASRecD checkpoint")
    return state


def check_dllm2rec_shares(shares):
    """Three non-negative shares (position, confidence, consistency); the first two, whose
    parts are normalised over the candidates, not both 0, so the weights never divide by 0."""
    if (not isinstance(shares, (list, tuple)) or len(shares) != 3
            or not all(isinstance(share, (int, float)) and share >= 0 for share in shares)
            or shares[0] + shares[1] <= 0):
        raise ConfigError(f"dllm2rec_shares must be [position, confidence, consistency], three numbers >= 0 "
                          f"with position + confidence > 0; got {shares!r}")
    return tuple(float(share) for share in shares)


def sample_negatives(item_seq, target, n_items):
    """One item per sequence, uniform over the real items outside its history and target.

    A clash is redrawn at most ``NEGATIVE_RESAMPLING_ROUNDS`` times, so on a toy catalogue whose
    history covers most items one may remain; with thousands of items and 50-item histories
    the chance is negligible."""
    negatives = torch.randint(PADDING_ITEM + 1, n_items, target.shape, device=target.device)
    for _ in range(NEGATIVE_RESAMPLING_ROUNDS):
        clash = (item_seq == negatives.unsqueeze(1)).any(dim=1) | (negatives == target)
        if not clash.any():
            break
        negatives[clash] = torch.randint(PADDING_ITEM + 1, n_items, (int(clash.sum()),), device=target.device)
    return negatives


class ItemEmbeddingWithTeacher(nn.Embedding):
    """DLLM2Rec's collaborative embedding distillation on SASRec's item table.

    Looked up (the history's inputs), item i is ``E_i + w * Linear(T_i)`` with ``T`` the
    teacher's item embeddings (frozen, set by the trainer); ``weight`` stays the ID table
    ``E`` that scores items, as in SASRec. Until ``T`` is set the lookup is ``E_i``.
    The projection starts at zero: the student starts exactly as the SASRec it was given (the
    phase's starting point, which early stopping may keep), and the teacher's part grows by
    learning (its gradient, ``dL/d(out) * T``, is not zero at zero weights).
    """

    def __init__(self, item_embedding, teacher_width, share):
        super().__init__(item_embedding.num_embeddings, item_embedding.embedding_dim,
                         padding_idx=item_embedding.padding_idx)
        self.weight = item_embedding.weight  # the same parameter, under the same name
        self.share = share
        self.projection = nn.Linear(teacher_width, item_embedding.embedding_dim)
        nn.init.zeros_(self.projection.weight)
        nn.init.zeros_(self.projection.bias)
        self.register_buffer("teacher_embedding", torch.zeros(item_embedding.num_embeddings, teacher_width))
        self.register_buffer("teacher_embedding_set", torch.tensor(False))

    def forward(self, item_ids):
        embedding = super().forward(item_ids)
        if not bool(self.teacher_embedding_set):
            return embedding
        return embedding + self.share * self.projection(self.teacher_embedding[item_ids])


class SASRecD(SASRec):
    """RecBole's SASRec plus the LLM -> CRM distillation terms (LLMD4Rec's Eq. 9, or a baseline)."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.check_settings(config)
        # saved with every checkpoint (RecBole's other_parameter), checked where one is read
        self.dataset_identity = dataset_identity(dataset)
        self.other_parameter_name = ["dataset_identity"]
        self.distill_beta = config["distill_beta"]
        self.distill_temperature = config["distill_temperature"]
        self.sample_weight = config["sample_weight"]
        self.length_groups = require_int(config, "length_groups", 0, " (0: no grouping)")
        self.dllm2rec_topk = require_int(config, "dllm2rec_topk", 1)
        self.dllm2rec_weight = config["dllm2rec_weight"]
        self.dllm2rec_shares = check_dllm2rec_shares(config["dllm2rec_shares"])
        self.dllm2rec_embedding_weight = config["dllm2rec_embedding_weight"]
        self.leader_weight = config["leader_weight"]
        self.feature_projection = None

    @staticmethod
    def check_settings(config):
        """SASRecD's own keys, refused before the data set loads (quick_start calls this first)."""
        check_distillation_settings(config, "SASRecD")
        if config["loss_type"] not in ("CE", "BPR"):
            raise ConfigError(f"SASRecD trains with loss_type CE or BPR (crm_loss_type sets either), "
                              f"got {config['loss_type']!r}")
        for key, minimum in (("length_groups", 0), ("dllm2rec_topk", 1)):
            require_int(config, key, minimum)
        check_dllm2rec_shares(config["dllm2rec_shares"])

    # ---- the parts a baseline distiller adds (the trainer calls these) ----------------------
    def add_distiller_parts(self, distiller, teacher_width):
        """DLLM2Rec: the teacher-augmented item inputs (if its embedding weight is > 0);
        LEADER: the projection of the user state to the teacher's width."""
        if distiller == "dllm2rec" and self.dllm2rec_embedding_weight > 0:
            self.item_embedding = ItemEmbeddingWithTeacher(self.item_embedding, teacher_width,
                                                           self.dllm2rec_embedding_weight)
        elif distiller == "leader":
            self.feature_projection = nn.Linear(self.hidden_size, teacher_width)

    @property
    def has_teacher_inputs(self):
        """True when the item inputs carry a teacher's embeddings (no plain SASRec then)."""
        return isinstance(self.item_embedding, ItemEmbeddingWithTeacher)

    @torch.no_grad()
    def set_teacher_item_embeddings(self, weight):
        """DLLM2Rec: the teacher's item embeddings (n_items, teacher width), kept frozen."""
        if not self.has_teacher_inputs:
            return
        self.item_embedding.teacher_embedding.copy_(weight.detach().to(self.item_embedding.teacher_embedding))
        self.item_embedding.teacher_embedding_set.fill_(True)

    def sasrec_state_dict(self):
        """The state dict without the baseline parts: loads into RecBole's ``SASRec``."""
        return {key: value for key, value in self.state_dict().items()
                if not key.startswith("feature_projection.")}

    # ---- scores and losses ------------------------------------------------------------------
    def forward(self, item_seq, item_seq_len):
        """SASRec's user state, computed in length groups (see ``length_groups``)."""
        return forward_in_length_groups(super().forward, item_seq, item_seq_len, self.length_groups)

    def item_logits(self, interaction):
        """Scores of every item for each sequence in the batch: (B, n_items)."""
        return self._logits(self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]))

    def _logits(self, user_state):
        return torch.matmul(user_state, self.item_embedding.weight.transpose(0, 1))

    def calculate_loss(self, interaction, teacher_logits=None, teacher=None):
        """SASRec's loss; with a teacher also its distillation term. The teacher comes as
        ``teacher_logits`` (B, n_items: LLMD4Rec's KL) or from a teacher store as
        :class:`TeacherTargets` (Eq. 9), :class:`RankingTargets` (DLLM2Rec) or
        :class:`FeatureTargets` (LEADER)."""
        if teacher_logits is None and teacher is None:
            return super().calculate_loss(interaction)
        user_state = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        logits = self._logits(user_state)
        target = interaction[self.POS_ITEM_ID]
        rec_loss = self._rec_loss(logits, interaction)
        if teacher is None:
            teacher = item_teacher_targets(teacher_logits, target, self.distill_temperature)
        if isinstance(teacher, TeacherTargets):
            kl, weight = distillation_terms(logits, teacher, target, self.distill_temperature, self.sample_weight)
            return distillation_objective(rec_loss, kl, weight, self.distill_beta)
        if isinstance(teacher, RankingTargets):
            return rec_loss + self.dllm2rec_weight * self._ranking_loss(logits, interaction, teacher).mean()
        if isinstance(teacher, FeatureTargets):
            if self.feature_projection is None:
                raise LLMD4RecError("LEADER's teacher needs add_distiller_parts('leader', width) first")
            alignment = feature_distillation_loss(self.feature_projection(user_state), teacher.user_state)
            return rec_loss + self.leader_weight * alignment.mean()
        raise LLMD4RecError(f"SASRecD cannot learn from a teacher given as {type(teacher).__name__}")

    def _rec_loss(self, logits, interaction):
        """SASRec's own loss from the scores of every item (B, n_items): CE over all items, or
        BPR on the target against the batch's sampled negative (the paper's pairwise ``L_rec``);
        the distillation terms read the same scores over all items."""
        target = interaction[self.POS_ITEM_ID]
        if self.loss_type == "CE":
            return self.loss_fct(logits, target)
        positive = logits.gather(1, target.unsqueeze(1)).squeeze(1)
        negative = logits.gather(1, interaction[self.NEG_ITEM_ID].unsqueeze(1)).squeeze(1)
        return self.loss_fct(positive, negative)

    def _ranking_loss(self, logits, interaction, teacher):
        """DLLM2Rec's importance-aware ranking distillation for the batch, (B,)."""
        with torch.no_grad():
            student_top = real_items(logits).topk(self.dllm2rec_topk, dim=1).indices + (PADDING_ITEM + 1)
            in_student_top = (teacher.candidates.unsqueeze(2) == student_top.unsqueeze(1)).any(dim=2)
            weights = ranking_distillation_weights(teacher.scores, in_student_top, *self.dllm2rec_shares)
            negatives = sample_negatives(interaction[self.ITEM_SEQ], interaction[self.POS_ITEM_ID], self.n_items)
        candidate_scores = logits.gather(1, teacher.candidates)
        negative_scores = logits.gather(1, negatives.unsqueeze(1)).squeeze(1)
        return ranking_distillation_loss(candidate_scores, negative_scores, weights)
