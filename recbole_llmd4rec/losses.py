"""Loss functions of LLMD4Rec (arXiv 2505.18120) and of the distillation baselines it is
compared with: small pure functions on tensors.

Notation follows the paper (Sec. 4): ``y_c`` CRM logits, ``y_l`` LLM logits, temperatures
T1 (CRM teaches LLM) and T2 (LLM teaches CRM), coefficients gamma and beta, sample-wise
adaptive weights w1 and w2 (Eq. 4 and Eq. 8). The baselines (paper Sec. 5.1.2): DLLM2Rec's
importance-aware ranking distillation (Cui et al., RecSys 2024), LEADER's feature
distillation (Liu et al., 2024) and LLM-SRec's distillation of the CRM's user representation
(Kim et al., KDD 2025). Nothing here knows about models or config; teacher inputs are detached
so no gradient ever reaches a teacher.
"""

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

# ---- the logit layout: RecBole scores (B, n_items) with column 0 the padding item ----------
PADDING_ITEM = 0  # RecBole's item id 0 is padding, never a target


def real_items(logits):
    """RecBole logits (B, n_items) without the padding column."""
    return logits[:, PADDING_ITEM + 1 :]


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
    probs = F.softmax(teacher_logits.float() / temperature, dim=-1)
    return probs, sum_p_log_p(probs)


@torch.no_grad()
def sum_p_log_p(probs):
    """``sum_i p_i log p_i`` per row (B,), with 0 log 0 = 0: the KL's teacher-only term."""
    return torch.where(probs > 0, probs * probs.log(), torch.zeros_like(probs)).sum(dim=-1)


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


# ---- the composition of a student's distillation term (Eq. 3-4 / 7-8) ------------------------
def item_teacher_targets(teacher_logits, target, temperature):
    """:class:`TeacherTargets` over the real items of RecBole logits (B, n_items)."""
    return teacher_targets(real_items(teacher_logits), target - (PADDING_ITEM + 1), temperature)


def distillation_terms(student_logits, teacher, target, temperature, use_sample_weight):
    """Per-sample KL and adaptive weight over the real items (padding column dropped).

    ``teacher``: :class:`TeacherTargets` over the real items (a teacher store's lookup, or
    :func:`item_teacher_targets` of raw teacher logits).
    """
    student_items = real_items(student_logits)
    kl = kl_to_distribution(student_items, teacher.probs, teacher.neg_entropy, temperature)
    if use_sample_weight:
        student_rank = target_rank(student_items, target - (PADDING_ITEM + 1))
        weight = adaptive_weight(student_rank, teacher.target_rank)
    else:
        weight = torch.ones_like(kl)
    return kl, weight


class RankingTargets(NamedTuple):
    """What DLLM2Rec's ranking distillation needs from the teacher for one batch."""

    candidates: torch.Tensor  # (B, K) the teacher's top-K items, best first
    scores: torch.Tensor  # (B, K) the teacher's scores of them


class FeatureTargets(NamedTuple):
    """What LEADER's feature distillation and LLM-SRec's user-representation distillation need
    from the teacher for one batch."""

    user_state: torch.Tensor  # (B, D) the teacher's user state


# ---- DLLM2Rec: importance-aware ranking distillation (Cui et al., RecSys 2024, Sec. 4.1) ----
def ranking_distillation_weights(teacher_scores, in_student_top, position_share, confidence_share,
                                 consistency_share):
    """Importance of each of the teacher's top-K candidates, (B, K), rows summing to 1.

    ``teacher_scores``: (B, K) the teacher's scores of its candidates, best first;
    ``in_student_top``: (B, K) bool, the candidate is also in the student's top K. The
    weight mixes three parts with the given shares and is renormalised: position ``exp(-r)``
    for the 1-based rank r and confidence ``softmax(teacher_scores)`` (DLLM2Rec's
    ``exp(-distance)`` for a teacher that scores items), each summing to 1 over the K, and
    consistency 1/0, raw, as DLLM2Rec mixes it.
    """
    n_candidates = teacher_scores.size(1)
    ranks = torch.arange(1, n_candidates + 1, dtype=torch.float32, device=teacher_scores.device)
    position = torch.softmax(-ranks, dim=0).expand_as(teacher_scores)  # exp(-r) / sum exp(-r)
    confidence = torch.softmax(teacher_scores.detach().float(), dim=1)
    consistency = in_student_top.float()
    mixed = position_share * position + confidence_share * confidence + consistency_share * consistency
    return mixed / mixed.sum(dim=1, keepdim=True)


def ranking_distillation_loss(candidate_scores, negative_scores, weights):
    """Per-sample DLLM2Rec ranking loss, (B,): every candidate is a weighted pseudo-positive
    against the sample's negative, ``sum_k w_k * -(log sigmoid(s_k) + log sigmoid(-s_neg))``.

    ``candidate_scores``: (B, K) the student's scores of the teacher's candidates;
    ``negative_scores``: (B,) its score of one sampled negative item; ``weights``: (B, K).
    (The negative term is ``log sigmoid(-s)``, the log-probability of "not relevant".)
    """
    per_candidate = -(F.logsigmoid(candidate_scores) + F.logsigmoid(-negative_scores).unsqueeze(1))
    return (weights.detach() * per_candidate).sum(dim=1)


# ---- LEADER: feature distillation (Liu et al., 2024; its distillation part only) ----
def feature_distillation_loss(projected_student_state, teacher_state):
    """Per-sample mean squared error between the student's user state projected to the
    teacher's width and the teacher's (detached) user state, (B,)."""
    return (projected_student_state - teacher_state.detach().float()).pow(2).mean(dim=1)


# ---- LLM-SRec: distillation of the CRM's user representation (Kim et al., KDD 2025) ----------
UNIFORMITY_TEMPERATURE = 2.0  # t of the uniformity loss (Wang & Isola, 2020), as LLM-SRec takes it


def user_alignment_loss(student_projected, teacher_projected):
    """LLM-SRec's L_Distill per sample, (B,): the squared distance between the two projected user
    representations on the unit sphere, ``||z_s - z_t||^2 = 2 - 2 cos(z_s, z_t)``.

    On unit vectors (not the raw projections) because both projections train: on raw vectors
    both could shrink their outputs to zero, a trivial minimum the scale-free uniformity term
    cannot prevent. Summed over the dimensions (the MSE times the width), so the term's scale,
    in [0, 4], does not fall with the projection's width. No detach: the teacher's projection is
    a trained part of the student; its input, the CRM's user state, comes without gradient.
    """
    student = F.normalize(student_projected.float(), dim=1)
    teacher = F.normalize(teacher_projected.float(), dim=1)
    return (student - teacher).pow(2).sum(dim=1)


def uniformity_loss(projected, temperature=UNIFORMITY_TEMPERATURE):
    """LLM-SRec's L_Uniform of one batch of representations (a scalar): the uniformity loss of
    Wang & Isola (2020), ``log mean_{i<j} exp(-t ||z_i - z_j||^2)`` over the pairs of the rows
    put on the unit sphere. Lowest when the rows spread over the sphere, 0 when they all
    coincide (collapse). A batch of one row has no pair: 0.

    The squared distances are ``2 - 2 z_i . z_j`` (no square root, whose gradient is undefined
    for two equal rows), and the mean of the exponentials is taken in log space.
    """
    rows = projected.size(0)
    if rows < 2:
        return projected.sum() * 0.0
    unit = F.normalize(projected.float(), dim=1)
    first, second = torch.triu_indices(rows, rows, offset=1, device=unit.device)
    squared = (2 - 2 * (unit @ unit.T)[first, second]).clamp(min=0)
    return torch.logsumexp(-temperature * squared, dim=0) - math.log(len(first))


def user_distillation_objective(rec_loss, student_projected, teacher_projected, weight, uniformity_weight):
    """LLM-SRec's total loss of the LLM recommender:
    ``rec_loss + weight * (mean_b L_Distill_b + uniformity_weight * (L_Uniform(student) + L_Uniform(teacher)))``
    on the two projected user representations (B, k)."""
    alignment = user_alignment_loss(student_projected, teacher_projected).mean()
    uniformity = uniformity_loss(student_projected) + uniformity_loss(teacher_projected)
    return rec_loss + weight * (alignment + uniformity_weight * uniformity)
