"""Loss functions of LLMD4Rec (arXiv 2505.18120): small pure functions on tensors.

Notation follows the paper (Sec. 4): ``y_c`` CRM logits, ``y_l`` LLM logits, temperatures
T1 (CRM teaches LLM) and T2 (LLM teaches CRM), coefficients gamma and beta, sample-wise
adaptive weights w1 and w2 (Eq. 4 and Eq. 8). Nothing here knows about models or config;
teacher inputs are detached so no gradient ever reaches a teacher.
"""

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


def distill_kl(student_logits, teacher_logits, temperature):
    """Per-sample KL(softmax(teacher / T) || softmax(student / T)), Eq. 3 (T1) and Eq. 7 (T2).

    Computed from log-softmax on both sides for numerical stability; teacher logits carry
    no gradient. A teacher logit of -inf (an item outside a top-K teacher's support) has
    probability 0 and adds nothing. Returns a (B,) tensor. No T^2 factor (the paper has none).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    student_log_probs = F.log_softmax(student_logits / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    teacher_probs = teacher_log_probs.exp()
    in_support = teacher_probs > 0
    teacher_log_probs = torch.where(in_support, teacher_log_probs, torch.zeros_like(teacher_log_probs))
    return (teacher_probs * (teacher_log_probs - student_log_probs)).sum(dim=-1)


def distillation_objective(rec_loss, kl, weight, coefficient):
    """Total loss of a student: ``rec_loss + coefficient * mean(weight * kl)``.

    Eq. 5 (LLM: coefficient gamma, weight w1) and Eq. 9 (CRM: beta, w2); the KL is weighted
    per sample and then averaged over the batch.
    """
    return rec_loss + coefficient * (weight.detach() * kl).mean()
