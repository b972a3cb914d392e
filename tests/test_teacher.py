"""Teacher stores: one pass, rows matched by instance id, full and top-K lookups of what the
student's loss needs (the teacher's distribution at T, its sum p log p, its target rank)."""

import numpy as np
import pytest
import torch

from recbole_llmd4rec import Config
from recbole_llmd4rec.losses import distill_kl, kl_to_distribution, target_rank
from recbole_llmd4rec.quick_start import load_dataset
from recbole_llmd4rec.distillers import FeatureDistiller, KLDistiller, RankingDistiller
from recbole_llmd4rec.teacher import INSTANCE_ID, TeacherStore

TEMPERATURE = 0.6


class FixedTeacher(torch.nn.Module):
    """Logits that depend on the instance only, so a misaligned lookup shows."""

    POS_ITEM_ID = "item_id"

    def __init__(self, n_items):
        super().__init__()
        self.n_items = n_items
        self.calls = 0

    def item_logits(self, interaction):
        self.calls += 1
        assert not torch.is_grad_enabled()
        return expected_logits(interaction[INSTANCE_ID], self.n_items)


def expected_logits(instance_ids, n_items):
    generator = torch.Generator().manual_seed(0)
    table = torch.randn(10_000, n_items, generator=generator)
    return table[instance_ids]


@pytest.fixture
def train_dataset(tiny):
    config = Config("SASRecD", **tiny)
    _, train_data, _, _ = load_dataset(config)
    return train_data._dataset


def targets_of(train_dataset, ids):
    return train_dataset[ids.numpy()]["item_id"]


@pytest.mark.parametrize("show_progress", [False, True])
def test_full_store_is_one_pass_and_follows_instance_ids(train_dataset, tmp_path, show_progress):
    teacher = FixedTeacher(train_dataset.item_num)
    distiller = KLDistiller(TEMPERATURE, train_dataset.item_num - 1)
    store = TeacherStore.build(teacher, train_dataset, tmp_path / "t", batch_size=100, device="cpu",
                               distiller=distiller, show_progress=show_progress)
    n = len(train_dataset)
    assert teacher.calls == store.forward_passes == -(-n // 100)
    ids = torch.tensor([5, 0, n - 1, 5])
    looked_up = store.lookup(ids, "cpu")
    items = expected_logits(ids, train_dataset.item_num)[:, 1:]  # padding column 0 left out
    target = targets_of(train_dataset, ids) - 1
    assert torch.allclose(looked_up.probs, torch.softmax(items / TEMPERATURE, dim=1), rtol=1e-3, atol=1e-7)
    assert torch.equal(looked_up.target_rank, target_rank(items, target))
    # What the student's loss gets from the store is the KL to the teacher's logits.
    student = torch.randn(len(ids), train_dataset.item_num - 1)
    assert torch.allclose(kl_to_distribution(student, looked_up.probs, looked_up.neg_entropy, TEMPERATURE),
                          distill_kl(student, items, TEMPERATURE), rtol=1e-3)
    assert store.nbytes == n * (train_dataset.item_num - 1) * 2 + n * (4 + 8)
    store.close()
    assert not list(tmp_path.glob("t.*"))  # the memory-mapped files are gone


def test_topk_store_keeps_the_k_largest_renormalised_and_ranks_over_all_items(train_dataset, tmp_path):
    teacher = FixedTeacher(train_dataset.item_num)
    distiller = KLDistiller(TEMPERATURE, train_dataset.item_num - 1, topk=5)
    store = TeacherStore.build(teacher, train_dataset, tmp_path / "t", 64, "cpu", distiller)
    ids = torch.tensor([3, 7])
    looked_up = store.lookup(ids, "cpu")
    items = expected_logits(ids, train_dataset.item_num)[:, 1:]
    for row in range(2):
        kept = looked_up.probs[row] > 0
        top = items[row].topk(5).indices
        assert set(kept.nonzero().flatten().tolist()) == set(top.tolist())
        renormalised = torch.softmax(items[row, top] / TEMPERATURE, dim=0)
        assert torch.allclose(looked_up.probs[row, top], renormalised, rtol=1e-3)
    assert torch.equal(looked_up.target_rank, target_rank(items, targets_of(train_dataset, ids) - 1))
    top_k_logits = torch.full_like(items, float("-inf")).scatter(1, items.topk(5).indices, items.topk(5).values)
    student = torch.randn(2, train_dataset.item_num - 1)
    assert torch.allclose(kl_to_distribution(student, looked_up.probs, looked_up.neg_entropy, TEMPERATURE),
                          distill_kl(student, top_k_logits, TEMPERATURE), rtol=1e-3)
    n = len(train_dataset)
    assert store.nbytes == n * 5 * (2 + 8) + n * (4 + 8)
    np.testing.assert_equal(store.arrays["indices"].shape, (n, 5))
    store.close()


def test_ranking_store_keeps_the_teachers_top_k_items_in_recbole_ids(train_dataset, tmp_path):
    teacher = FixedTeacher(train_dataset.item_num)
    store = TeacherStore.build(teacher, train_dataset, tmp_path / "t", 64, "cpu", RankingDistiller(3))
    ids = torch.tensor([2, 9])
    looked_up = store.lookup(ids, "cpu")
    items = expected_logits(ids, train_dataset.item_num)[:, 1:]
    assert torch.equal(looked_up.candidates, items.topk(3).indices + 1)  # best first, padding id 0 skipped
    assert torch.allclose(looked_up.scores, items.topk(3).values)
    store.close()


def test_feature_store_keeps_the_teachers_user_states(train_dataset, tmp_path):
    class StateTeacher(FixedTeacher):
        ITEM_SEQ, ITEM_SEQ_LEN = "item_id_list", "item_length"

        def forward(self, item_seq, item_seq_len):
            return torch.stack([item_seq.sum(1), item_seq_len], dim=1).float()

    store = TeacherStore.build(StateTeacher(train_dataset.item_num), train_dataset, tmp_path / "t", 64, "cpu",
                               FeatureDistiller())
    ids = torch.tensor([4, 1])
    batch = train_dataset[ids.numpy()]
    expected = torch.stack([batch["item_id_list"].sum(1), batch["item_length"]], dim=1).float()
    assert torch.allclose(store.lookup(ids, "cpu").user_state, expected, rtol=1e-3)
    store.close()


def test_a_teacher_that_fails_midway_leaves_no_files(train_dataset, tmp_path):
    class FailingTeacher(FixedTeacher):
        def item_logits(self, interaction):
            if self.calls == 1:
                raise RuntimeError("out of memory")
            return super().item_logits(interaction)

    teacher = FailingTeacher(train_dataset.item_num)
    with pytest.raises(RuntimeError, match="out of memory"):
        TeacherStore.build(teacher, train_dataset, tmp_path / "t", 16, "cpu",
                           KLDistiller(TEMPERATURE, train_dataset.item_num - 1))
    assert not list(tmp_path.glob("t.*")) and teacher.training  # files gone, train mode restored


def test_outputs_within_the_memory_limit_stay_in_memory_and_look_up_the_same(train_dataset, tmp_path):
    distiller = KLDistiller(TEMPERATURE, train_dataset.item_num - 1)
    on_disk = TeacherStore.build(FixedTeacher(train_dataset.item_num), train_dataset, tmp_path / "disk", 64, "cpu",
                                 distiller)
    assert len(list(tmp_path.glob("disk.*.npy"))) == 3
    in_memory = TeacherStore.build(FixedTeacher(train_dataset.item_num), train_dataset, tmp_path / "ram", 64, "cpu",
                                   distiller, memory_limit=on_disk.nbytes)
    assert not list(tmp_path.glob("ram.*"))
    ids = torch.tensor([1, 8, 3])
    assert all(torch.equal(a, b) for a, b in zip(on_disk.lookup(ids, "cpu"), in_memory.lookup(ids, "cpu")))
    on_disk.close(), in_memory.close()
    assert not list(tmp_path.glob("*.npy"))
