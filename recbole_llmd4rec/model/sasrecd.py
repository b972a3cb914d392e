"""SASRecD: SASRec that can learn from a teacher's logits (the CRM of LLMD4Rec).

Reference: "Bidirectional Knowledge Distillation for Enhancing Sequential Recommendation
with Large Language Models" (LLMD4Rec, arXiv 2505.18120), Sec. 4.3, Eq. 6-9; SASRec
(Kang and McAuley, ICDM 2018) is RecBole's implementation, unchanged.

Without a teacher this *is* RecBole's SASRec: the same parameters under the same names and
the same loss, so a trained SASRecD state dict loads into ``SASRec`` and the distilled model
is deployed at SASRec's inference cost. Given the teacher's logits for the batch it
minimises Eq. 9:

    L_CRM = L_rec + beta * mean_b( w2_b * KL(softmax(y_l / T2) || softmax(y_c / T2))_b )

where w2 is the sample-wise adaptive weight of Eq. 8 (student = CRM, teacher = LLM).
Histories are computed in length groups (``length_groups``; 0 = RecBole's padded batch),
which changes the work, not the function.
Logits follow RecBole's full-ranking layout, (B, n_items) with column 0 the padding item;
the padding column is left out of the KL and of the ranks.
"""

import torch
from recbole.model.sequential_recommender.sasrec import SASRec

from recbole_llmd4rec.config import require_int
from recbole_llmd4rec.errors import ConfigError
from recbole_llmd4rec.losses import (
    adaptive_weight, distillation_objective, kl_to_distribution, target_rank, teacher_targets,
)
from recbole_llmd4rec.model.length_groups import forward_in_length_groups

PADDING_ITEM = 0  # RecBole's item id 0 is padding, never a target


def check_distillation_settings(config, coefficient_key):
    """Refuse a non-positive temperature or a negative coefficient before training starts."""
    if config["distill_temperature"] <= 0:
        raise ConfigError(f"distill_temperature must be > 0, got {config['distill_temperature']}")
    if config[coefficient_key] < 0:
        raise ConfigError(f"{coefficient_key} must be >= 0, got {config[coefficient_key]}")


def item_teacher_targets(teacher_logits, target, temperature):
    """:class:`TeacherTargets` over the real items of RecBole logits (B, n_items)."""
    return teacher_targets(teacher_logits[:, PADDING_ITEM + 1 :], target - (PADDING_ITEM + 1), temperature)


def distillation_terms(student_logits, teacher, target, temperature, use_sample_weight):
    """Per-sample KL and adaptive weight over the real items (padding column dropped).

    ``teacher``: :class:`TeacherTargets` over the real items (a teacher store's lookup, or
    :func:`item_teacher_targets` of raw teacher logits).
    """
    student_items = student_logits[:, PADDING_ITEM + 1 :]
    kl = kl_to_distribution(student_items, teacher.probs, teacher.neg_entropy, temperature)
    if use_sample_weight:
        student_rank = target_rank(student_items, target - (PADDING_ITEM + 1))
        weight = adaptive_weight(student_rank, teacher.target_rank)
    else:
        weight = torch.ones_like(kl)
    return kl, weight


class SASRecD(SASRec):
    """RecBole's SASRec plus the LLM -> CRM distillation term of LLMD4Rec (Eq. 9)."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        check_distillation_settings(config, "distill_beta")
        if self.loss_type != "CE":
            raise ConfigError("SASRecD distils full item distributions: set loss_type: CE")
        self.distill_beta = config["distill_beta"]
        self.distill_temperature = config["distill_temperature"]
        self.sample_weight = config["sample_weight"]
        self.length_groups = require_int(config, "length_groups", 0, " (0: no grouping)")

    def forward(self, item_seq, item_seq_len):
        """SASRec's user state, computed in length groups (see ``length_groups``)."""
        return forward_in_length_groups(super().forward, item_seq, item_seq_len, self.length_groups)

    def item_logits(self, interaction):
        """Scores of every item for each sequence in the batch: (B, n_items)."""
        seq_output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return torch.matmul(seq_output, self.item_embedding.weight.transpose(0, 1))

    def calculate_loss(self, interaction, teacher_logits=None, teacher=None):
        """SASRec's loss; with a teacher also the weighted KL of Eq. 9. The teacher comes as
        ``teacher_logits`` (B, n_items) or, from a teacher store, as :class:`TeacherTargets`."""
        if teacher_logits is None and teacher is None:
            return super().calculate_loss(interaction)
        logits = self.item_logits(interaction)
        target = interaction[self.POS_ITEM_ID]
        rec_loss = self.loss_fct(logits, target)
        if teacher is None:
            teacher = item_teacher_targets(teacher_logits, target, self.distill_temperature)
        kl, weight = distillation_terms(logits, teacher, target, self.distill_temperature, self.sample_weight)
        return distillation_objective(rec_loss, kl, weight, self.distill_beta)
