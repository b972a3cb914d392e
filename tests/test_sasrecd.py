"""SASRecD: SASRec without a teacher, SASRec plus Eq. 9 with one."""

import math

import pytest
import torch
from recbole.model.sequential_recommender.sasrec import SASRec
from recbole.utils import init_seed

from recbole_llmd4rec import Config
from recbole_llmd4rec.errors import ConfigError, LLMD4RecError
from recbole_llmd4rec.losses import distill_kl, distillation_terms, item_teacher_targets
from recbole_llmd4rec.model.sasrecd import (
    CRM_EMBEDDING_KEY, ItemEmbeddingWithTeacher, SASRecD, read_crm_checkpoint, sample_negatives,
)
from recbole_llmd4rec.quick_start import load_dataset


@pytest.fixture
def tiny_batch(tiny):
    config = Config("SASRecD", **tiny)
    _, train_data, _, _ = load_dataset(config)
    return config, train_data._dataset, next(iter(train_data))


def _models(config, dataset):
    init_seed(config["seed"], True)
    sasrec = SASRec(config, dataset)
    sasrecd = SASRecD(config, dataset)
    sasrecd.load_state_dict(sasrec.state_dict())
    return sasrec, sasrecd


def test_sasrecd_defaults_layer_on_sasrec_defaults(tiny_batch):
    config, _, _ = tiny_batch
    assert config["distill_beta"] == 0.5 and config["distill_temperature"] == 0.2 and config["sample_weight"] is True
    assert config["n_layers"] == 1 and config["hidden_act"] == "gelu"  # tiny.yaml and RecBole's SASRec.yaml


def test_without_teacher_it_is_sasrec_bit_for_bit(tiny_batch):
    config, dataset, batch = tiny_batch
    config["length_groups"] = 0  # RecBole's padded batch: same dropout masks as SASRec
    sasrec, sasrecd = _models(config, dataset)
    losses = []
    for model in (sasrec, sasrecd):
        torch.manual_seed(3)  # same dropout masks
        loss = model.calculate_loss(batch)
        loss.backward()
        losses.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    assert torch.equal(losses[0][0], losses[1][0])
    assert all(torch.equal(a, b) for a, b in zip(losses[0][1], losses[1][1]))
    sasrec.eval(), sasrecd.eval()
    assert torch.equal(sasrec.full_sort_predict(batch), sasrecd.full_sort_predict(batch))


def test_state_dict_loads_into_plain_sasrec(tiny_batch):
    config, dataset, batch = tiny_batch
    sasrecd = SASRecD(config, dataset)
    sasrec = SASRec(config, dataset)
    assert set(sasrecd.state_dict()) == set(sasrec.state_dict())
    sasrec.load_state_dict(sasrecd.state_dict(), strict=True)
    sasrec.eval(), sasrecd.eval()
    # SASRecD computes in length groups by default: the same scores up to float rounding.
    with torch.no_grad():
        assert torch.allclose(sasrec.full_sort_predict(batch), sasrecd.full_sort_predict(batch), atol=1e-5)


def test_teacher_term_is_the_weighted_kl(tiny_batch):
    config, dataset, batch = tiny_batch
    _, model = _models(config, dataset)
    model.eval()
    teacher = torch.randn(len(batch), dataset.item_num)
    with torch.no_grad():
        plain = model.calculate_loss(batch)
        distilled = model.calculate_loss(batch, teacher_logits=teacher)
        targets = item_teacher_targets(teacher, batch["item_id"], 0.2)
        kl, weight = distillation_terms(model.item_logits(batch), targets, batch["item_id"], 0.2, True)
    assert distilled.item() == pytest.approx(plain.item() + 0.5 * (weight * kl).mean().item(), rel=1e-5)


def test_teacher_gradient_moves_the_student_toward_the_teacher(tiny_batch):
    config, dataset, batch = tiny_batch
    config["distill_beta"] = 50.0
    _, model = _models(config, dataset)
    model.eval()  # no dropout: the change comes from the gradient alone
    teacher = torch.randn(len(batch), dataset.item_num) * 3

    def teacher_student_kl():
        with torch.no_grad():
            logits = model.item_logits(batch)
            return distill_kl(logits[:, 1:], teacher[:, 1:], 0.2).mean().item()

    before = teacher_student_kl()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(5):
        optimizer.zero_grad()
        model.calculate_loss(batch, teacher_logits=teacher).backward()
        optimizer.step()
    assert teacher_student_kl() < before


def test_sample_weight_off_gives_weights_of_exactly_one():
    student = torch.randn(4, 6)
    teacher = torch.randn(4, 6)
    target = torch.tensor([1, 2, 3, 5])
    teacher = item_teacher_targets(teacher, target, 0.2)
    _, weight = distillation_terms(student, teacher, target, 0.2, use_sample_weight=False)
    assert torch.equal(weight, torch.ones(4))
    _, weight = distillation_terms(student, teacher, target, 0.2, use_sample_weight=True)
    assert ((weight >= 0) & (weight <= 2)).all()


def test_padding_column_is_left_out():
    student = torch.tensor([[50.0, 1.0, 2.0]])
    teacher = torch.tensor([[-50.0, 1.0, 2.0]])
    target = torch.tensor([2])
    kl, weight = distillation_terms(student, item_teacher_targets(teacher, target, 0.5), target, 0.5, True)
    assert kl.item() == pytest.approx(0.0, abs=1e-6) and weight.item() == 1.0


@pytest.mark.parametrize("override, message", [("--distill_beta=-1", r"SASRecD's distill_beta \(beta, .*\) must be >= 0"),
                                               ("--distill_temperature=0",
                                                r"SASRecD's distill_temperature \(T2, .*\) must be > 0, got 0"),
                                               ("--dllm2rec_shares=[0,0,1]", "dllm2rec_shares must be"),
                                               ("--dllm2rec_shares=[0.3,0.5]", "dllm2rec_shares must be")])
def test_nonsense_settings_are_refused(tiny, override, message):
    config = Config("SASRecD", **tiny, cmd_args=[override])
    _, train_data, _, _ = load_dataset(config)
    with pytest.raises(ConfigError, match=message):
        SASRecD(config, train_data._dataset)


def test_sampled_negatives_avoid_the_history_and_the_target():
    torch.manual_seed(0)
    item_seq = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    target = torch.tensor([4, 1])
    for _ in range(50):
        negatives = sample_negatives(item_seq, target, n_items=8)  # real items 1..7
        assert negatives[0].item() in {5, 6, 7} and negatives[1].item() in {2, 3, 6, 7}


def test_teacher_item_inputs_add_the_projected_teacher_embedding_and_keep_the_scoring_table():
    table = torch.nn.Embedding(5, 3, padding_idx=0)
    inputs = ItemEmbeddingWithTeacher(table, teacher_width=2, share=0.5)
    assert inputs.weight is table.weight  # items are still scored with SASRec's own table
    ids = torch.tensor([[1, 4]])
    assert torch.equal(inputs(ids), table(ids))  # no teacher embeddings yet: plain lookups
    teacher = torch.arange(10, dtype=torch.float32).view(5, 2)
    inputs.teacher_embedding.copy_(teacher)
    inputs.teacher_embedding_set.fill_(True)
    # The projection starts at zero: the student starts as the SASRec it was given ...
    assert torch.equal(inputs(ids), table(ids))
    # ... and learns: the projection's gradient is not zero there.
    inputs(ids).sum().backward()
    assert inputs.projection.weight.grad.abs().sum() > 0
    with torch.no_grad():
        inputs.projection.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        inputs.projection.bias.copy_(torch.tensor([0.0, 0.0, -1.0]))
    # item 1: T = (2, 3) -> (2, 3, 4); item 4: T = (8, 9) -> (8, 9, 16); times the share 0.5
    expected = table(ids) + torch.tensor([[[1.0, 1.5, 2.0], [4.0, 4.5, 8.0]]])
    assert torch.allclose(inputs(ids), expected)


@pytest.mark.parametrize("distiller", ["dllm2rec", "leader"])
def test_a_baseline_distillers_parts_leave_the_starting_scores_unchanged(tiny_batch, distiller):
    # An LLM -> CRM phase starts from (and early stopping may keep) the SASRec it was given.
    config, dataset, batch = tiny_batch
    _, sasrecd = _models(config, dataset)
    sasrecd.eval()
    with torch.no_grad():
        before = sasrecd.full_sort_predict(batch)
        sasrecd.add_distiller_parts(distiller, teacher_width=7)
        sasrecd.set_teacher_item_embeddings(torch.randn(dataset.item_num, 7))
        assert torch.equal(sasrecd.full_sort_predict(batch), before)


def test_the_ranking_distillation_of_a_batch_on_hand_made_scores(monkeypatch):
    # Items 0 (padding) .. 4; history [1, 2] and target 3; the sampled negative is item 4
    # (sample_negatives has its own test; here it is fixed to keep the values hand-made).
    from types import SimpleNamespace

    sampled = []

    def negative_4(item_seq, target, n_items):
        sampled.append((item_seq.tolist(), target.tolist(), n_items))
        return torch.tensor([4])

    monkeypatch.setattr("recbole_llmd4rec.model.sasrecd.sample_negatives", negative_4)
    student = SimpleNamespace(dllm2rec_topk=2, dllm2rec_shares=[0.3, 0.5, 0.1], n_items=5,
                              ITEM_SEQ="item_id_list", POS_ITEM_ID="item_id")
    logits = torch.tensor([[9.0, 0.5, 0.1, 2.0, -1.0]])  # the padding column's 9 must be ignored
    interaction = {"item_id_list": torch.tensor([[1, 2]]), "item_id": torch.tensor([3])}
    teacher = SimpleNamespace(candidates=torch.tensor([[3, 1]]), scores=torch.tensor([[2.0, 1.0]]))
    loss = SASRecD._ranking_loss(student, logits, interaction, teacher)
    # Both candidates are in the student's top 2 ({3, 1}), so each weight is
    # 0.3 * e^-r / (e^-1 + e^-2) + 0.5 * softmax(2, 1) + 0.1, over their sum (1.0 here).
    position = confidence = torch.tensor([1.0, math.exp(-1.0)]) / (1.0 + math.exp(-1.0))
    weights = 0.3 * position + 0.5 * confidence + 0.1
    weights = weights / weights.sum()

    def minus_log_sigmoid(x):
        return math.log1p(math.exp(-x))

    negative = minus_log_sigmoid(1.0)  # -log sigmoid(-s_4), s_4 = -1
    expected = weights[0] * (minus_log_sigmoid(2.0) + negative) + weights[1] * (minus_log_sigmoid(0.5) + negative)
    assert loss.shape == (1,) and loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert sampled == [([[1, 2]], [3], 5)]


def test_a_crm_checkpoint_without_an_item_table_is_refused_in_one_line(tiny_batch, tmp_path):
    _, dataset, _ = tiny_batch
    path = tmp_path / "not_a_crm.pth"
    torch.save({"config": {"dataset": "tiny"}, "state_dict": {"weight": torch.zeros(1)}}, path)
    with pytest.raises(LLMD4RecError, match="has no 'item_embedding.weight': not a SASRec/SASRecD checkpoint"):
        read_crm_checkpoint(path, dataset)


def test_a_crm_checkpoint_of_another_data_set_is_refused_even_with_as_many_items(tiny_batch, tmp_path):
    config, dataset, _ = tiny_batch
    model = SASRecD(config, dataset)
    assert model.other_parameter()["dataset_identity"]["dataset"] == "tiny"  # kept with every checkpoint
    path = tmp_path / "crm.pth"

    def saved(identity):
        other = {} if identity is None else {"dataset_identity": identity}
        torch.save({"config": config, "state_dict": model.state_dict(), "other_parameter": other}, path)
        return path

    assert CRM_EMBEDDING_KEY in read_crm_checkpoint(saved(model.dataset_identity), dataset)
    same_size = {**model.dataset_identity, "items_sha256": "0" * 64}
    with pytest.raises(LLMD4RecError, match="trained on data set 'tiny' with other item tokens, not on this 'tiny'"):
        read_crm_checkpoint(saved(same_size), dataset)
    with pytest.raises(LLMD4RecError, match="trained on data set 'beauty', not on this 'tiny'"):
        read_crm_checkpoint(saved({**same_size, "dataset": "beauty"}), dataset)
    assert CRM_EMBEDDING_KEY in read_crm_checkpoint(saved(None), dataset)  # older: its config's name matches
