"""Teacher stores: one pass, rows matched by instance id, full and top-K lookups of what the
student's loss needs (the teacher's distribution at T, its sum p log p, its target rank)."""

import numpy as np
import pytest
import torch

from recbole_llmd4rec import Config
from recbole_llmd4rec.losses import distill_kl, kl_to_distribution, target_rank
from recbole_llmd4rec.quick_start import load_dataset
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
    store = TeacherStore.build(teacher, train_dataset, str(tmp_path / "t.npy"), batch_size=100, device="cpu",
                               temperature=TEMPERATURE, show_progress=show_progress)
    n = len(train_dataset)
    assert teacher.calls == store.forward_passes == -(-n // 100)
    ids = torch.tensor([5, 0, n - 1, 5])
    looked_up = store.lookup(ids, "cpu")
    items = expected_logits(ids, train_dataset.item_num)[:, 1:]  # padding column 0 left out
    target = targets_of(train_dataset, ids) - 1
    assert torch.allclose(looked_up.probs, torch.softmax(items / TEMPERATURE, dim=1), rtol=1e-3, atol=1e-7)
    assert torch.equal(looked_up.target_rank, target_rank(items, target))
    # What the student's loss gets from the store is the KL to the teacher's logits.
    student = torch.randn(len(ids), store.n_items)
    assert torch.allclose(kl_to_distribution(student, looked_up.probs, looked_up.neg_entropy, TEMPERATURE),
                          distill_kl(student, items, TEMPERATURE), rtol=1e-3)
    assert store.nbytes == n * store.n_items * 2 + n * (4 + 8)
    store.close()
    assert not (tmp_path / "t.npy").exists()


def test_topk_store_keeps_the_k_largest_renormalised_and_ranks_over_all_items(train_dataset, tmp_path):
    teacher = FixedTeacher(train_dataset.item_num)
    store = TeacherStore.build(teacher, train_dataset, str(tmp_path / "t.npy"), 64, "cpu", TEMPERATURE, topk=5)
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
    student = torch.randn(2, store.n_items)
    assert torch.allclose(kl_to_distribution(student, looked_up.probs, looked_up.neg_entropy, TEMPERATURE),
                          distill_kl(student, top_k_logits, TEMPERATURE), rtol=1e-3)
    n = len(train_dataset)
    assert store.nbytes == n * 5 * (2 + 8) + n * (4 + 8)
    assert not (tmp_path / "t.npy").exists()  # top-K lives in memory
    np.testing.assert_equal(store.indices.shape, (n, 5))
