"""Length groups change the work, not the function: fast path == reference path."""

import warnings

import pytest
import torch
from recbole.utils import init_seed

from recbole_llmd4rec import Config
from recbole_llmd4rec.model.e4srec import E4SRec
from recbole_llmd4rec.model.length_groups import fewest_positions_split, forward_in_length_groups
from recbole_llmd4rec.model.sasrecd import SASRecD
from recbole_llmd4rec.quick_start import load_dataset


def test_groups_return_rows_in_batch_order_with_each_group_cut_to_its_longest():
    item_seq = torch.tensor([[1, 2, 3, 0, 0], [4, 0, 0, 0, 0], [5, 6, 7, 8, 9], [1, 1, 0, 0, 0]])
    lengths = torch.tensor([3, 1, 5, 2])
    widths = []

    def forward(seq, seq_len):
        widths.append(seq.size(1))
        return torch.stack([seq[i, : seq_len[i]].sum() for i in range(len(seq))]).float().unsqueeze(1)

    reference = forward_in_length_groups(forward, item_seq, lengths, 0)
    widths.clear()
    grouped = forward_in_length_groups(forward, item_seq, lengths, 2)
    assert torch.equal(grouped, reference) and reference.squeeze(1).tolist() == [6, 4, 35, 2]
    assert sorted(widths) == [2, 5]  # {1, 2} cut to 2, {3, 5} cut to 5
    assert torch.equal(forward_in_length_groups(forward, item_seq, lengths, 16), reference)


@pytest.mark.parametrize("model_class", [SASRecD, E4SRec])
def test_fast_path_equals_reference_path(tiny, tmp_path, model_class):
    config = Config(model_class.__name__, **{**tiny, "config_dict": {
        **tiny["config_dict"], "llm_cache_dir": str(tmp_path), "lora_dropout": 0.0}})
    _, train_data, _, _ = load_dataset(config)
    batch = next(iter(train_data))
    assert len(set(batch["item_length"].tolist())) > 3  # the batch really has several lengths
    teacher = torch.randn(len(batch), train_data._dataset.item_num)
    results = []
    for groups, share_prompt in ((0, False), (4, True)):  # reference path, then every speed-up
        config["length_groups"], config["share_prompt"] = groups, share_prompt
        init_seed(config["seed"], True)
        model = model_class(config, train_data._dataset).eval()  # eval: no dropout masks to differ
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loss = model.calculate_loss(batch, teacher_logits=teacher)
            loss.backward()
            grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
            results.append((loss.item(), model.full_sort_predict(batch).detach(), grads))
        # the shared prompt's cache goes under the name this transformers takes (compat.cache_keyword)
        assert not [w for w in caught if "past_key_values" in str(w.message)]
    (loss0, scores0, grads0), (loss4, scores4, grads4) = results
    assert loss4 == pytest.approx(loss0, rel=1e-5)
    assert torch.allclose(scores4, scores0, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(grads0, grads4))


def test_split_computes_the_fewest_positions():
    # Lengths 1,1,1,2,9 in 2 groups: {1,1,1,2} + {9} = 4*2 + 9 = 17 positions, against
    # {1,1,1} + {2,9} = 3 + 18 = 21 or equal halves {1,1,1} + {2,9} = 21.
    assert fewest_positions_split([1, 1, 1, 2, 9], 2) == [4, 1]
    assert fewest_positions_split([1, 2, 3], 5) == [1, 1, 1]  # never more groups than lengths
    assert fewest_positions_split([4, 4, 4], 3) == [3]  # equal lengths stay together
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        lengths = sorted(torch.randint(1, 12, (9,), generator=generator).tolist())
        sizes = fewest_positions_split(lengths, 3)
        assert sum(sizes) == len(lengths) and len(sizes) <= 3
        assert positions(lengths, sizes) == min(
            positions(lengths, [a, b - a, len(lengths) - b])
            for a in range(1, len(lengths)) for b in range(a + 1, len(lengths))
        )


def positions(sorted_lengths, sizes):
    """Positions computed when each run of ``sizes`` is cut to its longest length."""
    total, start = 0, 0
    for size in sizes:
        if size:
            total += size * sorted_lengths[start + size - 1]
        start += size
    return total
