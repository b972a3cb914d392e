"""Loss functions of LLMD4Rec (arXiv 2505.18120): small pure functions on tensors.

Notation follows the paper (Sec. 4): ``y_c`` CRM logits, ``y_l`` LLM logits, temperatures
T1 (CRM teaches LLM) and T2 (LLM teaches CRM), coefficients gamma and beta, sample-wise
adaptive weights w1 and w2 (Eq. 4 and Eq. 8). Nothing here knows about models or config;
teacher inputs are detached so no gradient ever reaches a teacher.
"""

from typing import NamedTuple

import torch
import torch.nn.functional as F


def target_rank(scores, target):
    """1-based rank of each target item among all items (Sec. 4.2, "rank" in Eq. 4 / Eq. 8).

    ``scores``: (B, N) item scores; ``target``: (B,) item indices. Rank = 1 + the number of
    items scoring strictly higher than the target, so ties share the better rank.
    Returns a (B,) long tensor without gradient.
    """
    scores = scores.detach()
    target_scores = scores.gather(1, target.view(-1, 1))
    return (scores > target_scores).sum(dim=1) + 1


def adaptive_weight(student_rank, teacher_rank):
    """Sample-wise adaptive weight, Eq. 4 (w1) and Eq. 8 (w2) as one formula.

    With r_s the student's and r_t the teacher's rank of the ground-truth item:
    ``1 + (r_s - r_t) / max(r_t, 1)`` when the teacher ranks it better (r_s > r_t: learn more),
    else ``1 - (r_t - r_s) / max(r_s, 1)`` (student better or tie: learn less),
    clipped to [0, 2]. Returns a float (B,) tensor without gradient.
    """
    student_rank = student_rank.detach().float()
    teacher_rank = teacher_rank.detach().float()
    teacher_better = 1 + (student_rank - teacher_rank) / teacher_rank.clamp(min=1)
    student_better = 1 - (teacher_rank - student_rank) / student_rank.clamp(min=1)
    return torch.where(student_rank > teacher_rank, teacher_better, student_better).clamp(0.0, 2.0)


class TeacherTargets(NamedTuple):
    """What a student's KL (Eq. 3 / Eq. 7) and adaptive weight (Eq. 4 / Eq. 8) need from a
    frozen teacher for one batch, at the student's temperature T. None of it depends on the
    student, so a teacher store computes it once per phase instead of once per step."""

    probs: torch.Tensor  # (B, N) softmax(teacher_logits / T)
    neg_entropy: torch.Tensor  # (B,) sum_i p_i log p_i, with 0 log 0 = 0
    target_rank: torch.Tensor  # (B,) the teacher's rank of the ground-truth item


@torch.no_grad()
def teacher_distribution(teacher_logits, temperature):
    """``softmax(teacher_logits / T)`` (B, N) and its ``sum p log p`` (B,), without gradient.

    A logit of -inf (an item outside a top-K teacher's support) gets probability 0 and
    adds nothing (0 log 0 = 0).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    log_probs = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    probs = log_probs.exp()
    neg_entropy = torch.where(probs > 0, probs * log_probs, torch.zeros_like(probs)).sum(dim=-1)
    return probs, neg_entropy


def teacher_targets(teacher_logits, target, temperature):
    """:class:`TeacherTargets` from a teacher's logits (B, N) and the targets (B,)."""
    probs, neg_entropy = teacher_distribution(teacher_logits, temperature)
    return TeacherTargets(probs, neg_entropy, target_rank(teacher_logits, target))


def kl_to_distribution(student_logits, teacher_probs, teacher_neg_entropy, temperature):
    """Per-sample KL(p_teacher || softmax(student / T)), (B,), from the teacher's
    distribution and its ``sum p log p`` (:func:`teacher_distribution`).

    ``KL = sum p log p - sum p log softmax(s / T)``: only the second sum depends on the
    student, so a step with a precomputed teacher costs one log-softmax and one dot product.
    """
    student_log_probs = F.log_softmax(student_logits / temperature, dim=-1)
    return teacher_neg_entropy - torch.linalg.vecdot(teacher_probs, student_log_probs)


def distill_kl(student_logits, teacher_logits, temperature):
    """Per-sample KL(softmax(teacher / T) || softmax(student / T)), Eq. 3 (T1) and Eq. 7 (T2).

    Teacher logits carry no gradient; a teacher logit of -inf (an item outside a top-K
    teacher's support) has probability 0 and adds nothing. Returns a (B,) tensor.
    No T^2 factor (the paper has none).
    """
    return kl_to_distribution(student_logits, *teacher_distribution(teacher_logits, temperature), temperature)


def distillation_objective(rec_loss, kl, weight, coefficient):
    """Total loss of a student: ``rec_loss + coefficient * mean(weight * kl)``.

    Eq. 5 (LLM: coefficient gamma, weight w1) and Eq. 9 (CRM: beta, w2); the KL is weighted
    per sample and then averaged over the batch.
    """
    return rec_loss + coefficient * (weight.detach() * kl).mean()
