"""The loss functions against hand-computed values."""

import math

import pytest
import torch

from recbole_llmd4rec.losses import (
    adaptive_weight, distill_kl, distillation_objective, feature_distillation_loss, kl_to_distribution,
    ranking_distillation_loss, ranking_distillation_weights, target_rank, teacher_distribution, teacher_targets,
    uniformity_loss, user_alignment_loss, user_distillation_objective,
)


@pytest.mark.parametrize(
    "student_rank, teacher_rank, expected",
    # The worked values of the method spec.
    [(10, 5, 2.0), (6, 5, 1.2), (5, 5, 1.0), (5, 10, 0.0), (8, 10, 0.75), (1, 1, 1.0),
     # Clipping at both ends: teacher far better -> 2, student far better -> 0.
     (100, 2, 2.0), (1, 50, 0.0)],
)
def test_adaptive_weight_worked_values(student_rank, teacher_rank, expected):
    weight = adaptive_weight(torch.tensor([student_rank]), torch.tensor([teacher_rank]))
    assert weight.item() == pytest.approx(expected)


def test_adaptive_weight_is_batched_and_in_range():
    student = torch.tensor([10, 6, 5, 5, 8, 1])
    teacher = torch.tensor([5, 5, 5, 10, 10, 1])
    weight = adaptive_weight(student, teacher)
    assert weight.dtype == torch.float32 and weight.shape == (6,)
    assert torch.allclose(weight, torch.tensor([2.0, 1.2, 1.0, 0.0, 0.75, 1.0]))


def test_target_rank_counts_strictly_higher_scores():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.5], [3.0, 2.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    # Row 0: target 2 (0.5) has one strictly higher (0.9) and one tie -> rank 2.
    # Row 1: target 3 (lowest) -> rank 4. Row 2: all tied -> rank 1.
    assert target_rank(scores, torch.tensor([2, 3, 1])).tolist() == [2, 4, 1]


def test_distill_kl_matches_a_hand_computed_value():
    student = torch.tensor([[1.0, 0.0]])
    teacher = torch.tensor([[0.0, 1.0]])
    temperature = 0.5
    # softmax([2, 0]) and softmax([0, 2]) by hand.
    p_s = [math.exp(2) / (math.exp(2) + 1), 1 / (math.exp(2) + 1)]
    p_t = [p_s[1], p_s[0]]
    expected = sum(t * math.log(t / s) for t, s in zip(p_t, p_s))
    assert distill_kl(student, teacher, temperature).item() == pytest.approx(expected, rel=1e-6)


def test_distill_kl_is_from_the_teacher_to_the_student_on_an_asymmetric_pair():
    """KL(p_t || p_s) with p_t = (0.9, 0.1), p_s = (0.5, 0.5): 0.368; the reverse KL is 0.511."""
    student = torch.log(torch.tensor([[0.5, 0.5]]))
    teacher = torch.log(torch.tensor([[0.9, 0.1]]))
    teacher_to_student = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    student_to_teacher = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert teacher_to_student == pytest.approx(0.3681, abs=1e-4) and student_to_teacher == pytest.approx(0.5108, abs=1e-4)
    assert distill_kl(student, teacher, 1.0).item() == pytest.approx(teacher_to_student, rel=1e-6)
    probs, neg_entropy = teacher_distribution(teacher, 1.0)
    assert kl_to_distribution(student, probs, neg_entropy, 1.0).item() == pytest.approx(teacher_to_student, rel=1e-6)


def test_distill_kl_is_zero_for_equal_distributions_and_per_sample():
    logits = torch.randn(3, 7)
    kl = distill_kl(logits, logits + 5.0, 0.6)  # a constant shift leaves softmax unchanged
    assert kl.shape == (3,) and torch.allclose(kl, torch.zeros(3), atol=1e-6)


def test_distill_kl_is_stable_for_large_logits():
    student = torch.tensor([[1000.0, 0.0, -1000.0]])
    teacher = torch.tensor([[0.0, 1000.0, 0.0]])
    assert torch.isfinite(distill_kl(student, teacher, 0.2)).all()


def test_distill_kl_sends_no_gradient_to_the_teacher():
    student = torch.randn(2, 5, requires_grad=True)
    teacher = torch.randn(2, 5, requires_grad=True)
    distill_kl(student, teacher, 0.6).sum().backward()
    assert student.grad is not None and teacher.grad is None


def test_distill_kl_refuses_a_non_positive_temperature():
    with pytest.raises(ValueError, match="temperature"):
        distill_kl(torch.zeros(1, 2), torch.zeros(1, 2), 0.0)


def test_distillation_objective_weights_per_sample_then_averages():
    rec_loss = torch.tensor(2.0)
    kl = torch.tensor([1.0, 3.0])
    weight = torch.tensor([2.0, 0.5])
    # 2 + 0.5 * mean([2.0, 1.5]) = 2.875
    assert distillation_objective(rec_loss, kl, weight, 0.5).item() == pytest.approx(2.875)


def test_distill_kl_over_a_top_k_teacher_is_the_kl_to_the_renormalised_top_k():
    student = torch.tensor([[0.5, 1.0, -0.3, 2.0, 0.0]])
    full_teacher = torch.tensor([[3.0, 1.0, 2.5, -1.0, 0.2]])
    top_k = torch.full_like(full_teacher, float("-inf"))
    top_k[0, [0, 2]] = full_teacher[0, [0, 2]]  # the teacher's top-2 items
    kl = distill_kl(student, top_k, 0.6)
    p_t = torch.softmax(full_teacher[0, [0, 2]] / 0.6, dim=0)  # renormalised over the K items
    log_p_s = torch.log_softmax(student[0] / 0.6, dim=0)[[0, 2]]  # the student's full softmax
    expected = (p_t * (p_t.log() - log_p_s)).sum()
    assert kl.item() == pytest.approx(expected.item(), rel=1e-6)
    student.requires_grad_(True)
    distill_kl(student, top_k, 0.6).sum().backward()
    assert torch.isfinite(student.grad).all()


def test_teacher_targets_on_hand_computed_values():
    # Teacher logits [ln 1, ln 3, -inf] at T = 1: p = [0.25, 0.75, 0], sum p log p =
    # 0.25 ln 0.25 + 0.75 ln 0.75 = -0.562335; target item 0 has one item above it: rank 2.
    teacher = torch.tensor([[0.0, math.log(3.0), float("-inf")]])
    targets = teacher_targets(teacher, torch.tensor([0]), 1.0)
    assert torch.allclose(targets.probs, torch.tensor([[0.25, 0.75, 0.0]]))
    assert targets.neg_entropy.item() == pytest.approx(0.25 * math.log(0.25) + 0.75 * math.log(0.75), rel=1e-6)
    assert targets.target_rank.tolist() == [2]
    # Student logits [0, 0, 0] at T = 1: log q = -ln 3 everywhere, so
    # KL = sum p log p - sum p log q = -0.562335 + ln 3 = 0.536277.
    kl = kl_to_distribution(torch.zeros(1, 3), targets.probs, targets.neg_entropy, 1.0)
    assert kl.item() == pytest.approx(-0.5623351446 + math.log(3.0), rel=1e-6)


def test_ranking_distillation_weights_on_hand_computed_values():
    # K = 2. Position: exp(-1), exp(-2) normalised = [0.731059, 0.268941].
    # Confidence: softmax([ln 3, 0]) = [0.75, 0.25]. Consistency: [0, 1].
    # Mixed with shares 0.3 / 0.5 / 0.1: [0.3*0.731059 + 0.5*0.75, 0.3*0.268941 + 0.5*0.25 + 0.1]
    #   = [0.594318, 0.305682], sum 0.9; renormalised [0.660353, 0.339647].
    weights = ranking_distillation_weights(torch.tensor([[math.log(3.0), 0.0]]), torch.tensor([[False, True]]),
                                           0.3, 0.5, 0.1)
    assert torch.allclose(weights, torch.tensor([[0.660353, 0.339647]]), atol=1e-6)


def test_ranking_distillation_loss_uses_log_sigmoid_of_minus_the_negative_score():
    # One sample, two candidates scoring 0 and ln 3, negative scoring 0, weights 0.25 / 0.75:
    # -log sigmoid(0) = ln 2; -log sigmoid(ln 3) = ln(4/3); -log sigmoid(-0) = ln 2.
    # 0.25 * (ln 2 + ln 2) + 0.75 * (ln(4/3) + ln 2) = 1.081922
    loss = ranking_distillation_loss(torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([0.0]),
                                     torch.tensor([[0.25, 0.75]]))
    assert loss.item() == pytest.approx(0.25 * 2 * math.log(2) + 0.75 * (math.log(4 / 3) + math.log(2)), rel=1e-6)
    # A negative the student scores high costs more: log sigmoid(-s), not log sigmoid(1 - s).
    worse = ranking_distillation_loss(torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([3.0]),
                                      torch.tensor([[0.25, 0.75]]))
    assert worse.item() == pytest.approx(loss.item() + (math.log1p(math.exp(3.0)) - math.log(2)), rel=1e-6)


def test_feature_distillation_loss_is_the_per_sample_mean_squared_error():
    student = torch.tensor([[1.0, 2.0], [0.0, 0.0]], requires_grad=True)
    teacher = torch.tensor([[0.0, 4.0], [1.0, 1.0]])
    loss = feature_distillation_loss(student, teacher)
    assert loss.tolist() == pytest.approx([(1 + 4) / 2, (1 + 1) / 2])
    loss.sum().backward()
    assert student.grad.tolist() == [[1.0, -2.0], [-1.0, -1.0]]  # d/ds mean((s - t)^2) = (s - t)


def test_user_alignment_loss_is_the_squared_distance_of_the_unit_vectors():
    student = torch.tensor([[3.0, 4.0], [0.0, 2.0]], requires_grad=True)
    teacher = torch.tensor([[1.0, 0.0], [0.0, 5.0]], requires_grad=True)
    loss = user_alignment_loss(student, teacher)
    # (0.6, 0.8) vs (1, 0): 0.4^2 + 0.8^2 = 0.8 = 2 - 2 cos; the second pair points the same way at other scales
    assert loss.tolist() == pytest.approx([0.8, 0.0], abs=1e-6)
    loss.sum().backward()
    assert teacher.grad.abs().sum() > 0  # the teacher's projection trains: no detach on it


def test_uniformity_loss_on_hand_computed_values():
    # unit vectors (1, 0), (0, 1), (-1, 0): squared distances 2, 4, 2 over the three pairs i < j
    expected = math.log((2 * math.exp(-2 * 2) + math.exp(-2 * 4)) / 3)
    assert uniformity_loss(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])).item() == pytest.approx(expected, rel=1e-6)
    # on the unit sphere: the rows' lengths do not count
    assert uniformity_loss(torch.tensor([[2.0, 0.0], [0.0, 3.0], [-3.0, 0.0]])).item() == pytest.approx(expected, rel=1e-6)
    # the temperature is a parameter (t = 2 by default)
    assert uniformity_loss(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]), temperature=0.5).item() == pytest.approx(-2.0)


def test_uniformity_loss_is_highest_for_collapsed_rows_and_keeps_a_finite_gradient():
    collapsed = torch.tensor([[1.0, 2.0], [2.0, 4.0], [0.5, 1.0]], requires_grad=True)
    loss = uniformity_loss(collapsed)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)  # log mean exp(0)
    loss.backward()
    assert torch.isfinite(collapsed.grad).all()
    spread = uniformity_loss(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    assert spread < loss  # minimised by spreading the rows
    single = torch.tensor([[1.0, 2.0]], requires_grad=True)
    assert uniformity_loss(single).item() == 0.0  # one row has no pair
    uniformity_loss(single).backward()
    assert single.grad.tolist() == [[0.0, 0.0]]


def test_user_distillation_objective_weights_alignment_and_both_uniformities():
    student = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    teacher = torch.tensor([[1.0, 0.0], [0.0, 5.0]])
    # alignment: mean(0.8, 0) = 0.4; uniformity of the student's rows: d^2 = 2 - 2 * 0.8 = 0.4 -> -2 * 0.4;
    # of the teacher's: d^2 = 2 -> -2 * 2
    loss = user_distillation_objective(torch.tensor(1.0), student, teacher, weight=0.5, uniformity_weight=0.25)
    assert loss.item() == pytest.approx(1.0 + 0.5 * (0.4 + 0.25 * (-0.8 - 4.0)), rel=1e-6)
