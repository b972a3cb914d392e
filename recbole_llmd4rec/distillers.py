"""What a frozen teacher hands its student, per distillation method.

A distiller has two halves. ``teacher_outputs(teacher, batch)`` runs once per phase for every
training instance (the teacher store keeps the results); ``student_targets(stored)`` turns a
batch's stored rows into what the student's ``calculate_loss(interaction, teacher=...)``
takes. The student model computes the loss (``losses.py``); the trainer picks the distiller.

- ``llmd4rec`` (:class:`KLDistiller`): the teacher's distribution at the student's
  temperature, its ``sum p log p`` and its rank of the target (Eq. 3-4 / 7-8), all items or
  the teacher's top K. Used in both directions; with ``sample_weight: False`` and one
  direction it is plain one-way KD (Hinton et al., 2015).
- ``dllm2rec`` (:class:`RankingDistiller`, LLM -> CRM): the teacher's top-K items and scores
  (DLLM2Rec's importance-aware ranking distillation).
- ``leader`` (:class:`FeatureDistiller`, LLM -> CRM): the teacher's user state (LEADER's
  feature distillation).
- ``llmsrec`` (:class:`FeatureDistiller`, CRM -> LLM): the CRM's user state (LLM-SRec's
  distillation of the user representation into E4SRec).
"""

import torch

from recbole_llmd4rec.errors import ConfigError
from recbole_llmd4rec.losses import (
    PADDING_ITEM, FeatureTargets, RankingTargets, TeacherTargets, real_items, sum_p_log_p, target_rank,
    teacher_distribution,
)

# The teacher store's number type: half the memory of float32 at a relative error of 5e-4;
# probabilities below 6e-8 round to 0.
STORE_DTYPE = torch.float16
DISTILLERS = ("llmd4rec", "dllm2rec", "leader", "llmsrec")
ONE_WAY_DISTILLERS = ("dllm2rec", "leader")  # LLM -> CRM only
CRM_TO_LLM_DISTILLERS = ("llmsrec",)  # CRM -> LLM only


class KLDistiller:
    """LLMD4Rec's KL with sample-wise weights (the student picks the weights)."""

    def __init__(self, temperature, n_items, topk=None):
        self.temperature = temperature
        self.n_items = n_items  # real items, padding excluded
        self.topk = topk

    def teacher_outputs(self, teacher, batch):
        target = batch[teacher.POS_ITEM_ID] - (PADDING_ITEM + 1)
        return self.outputs_from_logits(real_items(teacher.item_logits(batch).float()), target)

    def outputs_from_logits(self, item_logits, target):
        """What is stored, from the teacher's logits over the real items and the targets' indices."""
        outputs = {"target_rank": target_rank(item_logits, target)}
        if self.topk is None:
            probs, _ = teacher_distribution(item_logits, self.temperature)
        else:
            values, outputs["indices"] = item_logits.topk(self.topk, dim=1)
            probs, _ = teacher_distribution(values, self.temperature)
        # The KL's teacher-only term is taken from the stored values, so the stored KL is >= 0.
        stored = probs.to(STORE_DTYPE)
        outputs.update(probs=stored, neg_entropy=sum_p_log_p(stored.float()))
        return outputs

    def student_targets(self, stored):
        probs = stored["probs"].float()
        if self.topk is not None:
            probs = torch.zeros(len(probs), self.n_items, device=probs.device).scatter_(1, stored["indices"], probs)
        return TeacherTargets(probs, stored["neg_entropy"], stored["target_rank"])


class RankingDistiller:
    """DLLM2Rec: the teacher's ``topk`` best items (RecBole ids, best first) and scores."""

    def __init__(self, topk):
        self.topk = topk

    def teacher_outputs(self, teacher, batch):
        scores, indices = real_items(teacher.item_logits(batch).float()).topk(self.topk, dim=1)
        return {"candidates": indices + (PADDING_ITEM + 1), "scores": scores}

    def student_targets(self, stored):
        return RankingTargets(stored["candidates"], stored["scores"])


class FeatureDistiller:
    """LEADER and LLM-SRec: the teacher's user state (its last hidden state), stored as STORE_DTYPE."""

    def teacher_outputs(self, teacher, batch):
        return {"user_state": teacher.forward(batch[teacher.ITEM_SEQ], batch[teacher.ITEM_SEQ_LEN]).to(STORE_DTYPE)}

    def student_targets(self, stored):
        return FeatureTargets(stored["user_state"].float())


def make_distiller(name, student, student_config, topk=None):
    """The distiller ``name`` for ``student`` (a RecBole model) with ``student_config``;
    ``topk`` for the KL's top-K teacher store (None: every item)."""
    if name == "llmd4rec":
        return KLDistiller(student_config["distill_temperature"], student.n_items - (PADDING_ITEM + 1), topk)
    if name == "dllm2rec":
        return RankingDistiller(student_config["dllm2rec_topk"])
    if name in ("leader", "llmsrec"):
        return FeatureDistiller()
    raise ConfigError(f"distiller must be one of {', '.join(DISTILLERS)}; got {name!r}")
