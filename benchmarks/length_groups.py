"""Positions computed per training batch: RecBole's padded batch, equal-size length groups and
the fewest-positions split that SASRecD and E4SRec use (``length_groups``).

    python benchmarks/length_groups.py --dataset=beauty --data_path=dataset/ --batches=50
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recbole_llmd4rec import Config  # noqa: E402
from recbole_llmd4rec.model.length_groups import fewest_positions_split  # noqa: E402
from recbole_llmd4rec.quick_start import load_dataset  # noqa: E402


def positions(sorted_lengths, sizes):
    """Positions computed when each run of ``sizes`` is cut to its longest length."""
    ends = np.cumsum(sizes)
    return int(sum(size * sorted_lengths[end - 1] for size, end in zip(sizes, ends)))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default="dataset/")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--seed", type=int, default=2020)
    args = parser.parse_args()
    config = Config("SASRecD", args.dataset, config_dict={"data_path": args.data_path, "state": "ERROR"})
    _, train_data, _, _ = load_dataset(config)
    lengths = train_data._dataset.inter_feat["item_length"].numpy()
    generator = np.random.default_rng(args.seed)
    samples = [np.sort(generator.choice(lengths, args.batch_size, replace=False)) for _ in range(args.batches)]
    width = config["MAX_ITEM_LIST_LENGTH"]
    print(f"{args.dataset}: {args.batches} random batches of {args.batch_size}, seed {args.seed}; mean per batch")
    print(f"items {np.mean([s.sum() for s in samples]):.0f}, padded batch {args.batch_size * width}")
    print("| groups | equal-size groups | fewest-positions split |\n|---|---|---|")
    for groups in (2, 4, 8):
        equal = np.mean([positions(s, [len(part) for part in np.array_split(s, groups)]) for s in samples])
        fewest = np.mean([positions(s, fewest_positions_split(s, groups)) for s in samples])
        print(f"| {groups} | {equal:.0f} | {fewest:.0f} |")


if __name__ == "__main__":
    main()
