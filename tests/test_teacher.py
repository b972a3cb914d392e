"""Teacher stores: one pass, rows matched by instance id, full and top-K lookups."""

import numpy as np
import pytest
import torch

from recbole_llmd4rec import Config
from recbole_llmd4rec.quick_start import load_dataset
from recbole_llmd4rec.teacher import INSTANCE_ID, TeacherStore


class FixedTeacher(torch.nn.Module):
    """Logits that depend on the instance only, so a misaligned lookup shows."""

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


@pytest.mark.parametrize("show_progress", [False, True])
def test_full_store_is_one_pass_and_follows_instance_ids(train_dataset, tmp_path, show_progress):
    teacher = FixedTeacher(train_dataset.item_num)
    store = TeacherStore.build(teacher, train_dataset, str(tmp_path / "t.npy"), batch_size=100, device="cpu",
                               show_progress=show_progress)
    n = len(train_dataset)
    assert teacher.calls == store.forward_passes == -(-n // 100)
    ids = torch.tensor([5, 0, n - 1, 5])
    looked_up = store.lookup(ids, "cpu")
    assert torch.allclose(looked_up, expected_logits(ids, train_dataset.item_num), atol=1e-2)  # float16
    assert store.nbytes == n * train_dataset.item_num * 2
    store.close()
    assert not (tmp_path / "t.npy").exists()


def test_topk_store_keeps_the_k_largest_and_masks_the_rest(train_dataset, tmp_path):
    teacher = FixedTeacher(train_dataset.item_num)
    store = TeacherStore.build(teacher, train_dataset, str(tmp_path / "t.npy"), 64, "cpu", topk=5)
    ids = torch.tensor([3, 7])
    looked_up = store.lookup(ids, "cpu")
    full = expected_logits(ids, train_dataset.item_num)
    for row in range(2):
        kept = torch.isfinite(looked_up[row])
        assert kept.sum() == 5
        assert set(kept.nonzero().flatten().tolist()) == set(full[row].topk(5).indices.tolist())
        assert torch.allclose(looked_up[row][kept], full[row][kept], atol=1e-2)
    assert store.nbytes == len(train_dataset) * 5 * (2 + 8)
    assert not (tmp_path / "t.npy").exists()  # top-K lives in memory
    np.testing.assert_equal(store.indices.shape, (len(train_dataset), 5))
