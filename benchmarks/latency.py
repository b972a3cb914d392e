"""Per-user inference latency of several checkpoints measured side by side on one machine, the
comparison's latency column without the machine-to-machine drift of records made on different
machines.

    OMP_NUM_THREADS=1 python benchmarks/latency.py MODEL_FILE [MODEL_FILE ...] [--repeats=3]

Each checkpoint is loaded once; then, ``--repeats`` times in turn (so slow spells of the machine
touch every file alike), its median milliseconds to score every item for one test user, one user
at a time, is measured as the comparison measures it (``experiments.child.median_user_latency_ms``).
"""

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recbole_llmd4rec.experiments.child import median_user_latency_ms  # noqa: E402
from recbole_llmd4rec.errors import LLMD4RecError  # noqa: E402
from recbole_llmd4rec.quick_start import load_data_and_model  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_files", nargs="+")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be a whole number >= 1, got {args.repeats}")
    try:
        loaded = {model_file: load_data_and_model(model_file) for model_file in args.model_files}
    except LLMD4RecError as exc:  # a missing or foreign checkpoint
        raise SystemExit(f"error: {exc}") from None
    timings = {model_file: [] for model_file in args.model_files}
    for _ in range(args.repeats):
        for model_file, (config, model, _, _, _, test_data) in loaded.items():
            timings[model_file].append(median_user_latency_ms(config, model, test_data))
    print(f"torch threads {torch.get_num_threads()}, {args.repeats} repeats, ms per user (median over users)")
    for model_file, values in timings.items():
        model = loaded[model_file][1]
        runs = ", ".join(f"{value:.3f}" for value in values)
        print(f"{model_file}: {type(model).__name__}, {sum(p.numel() for p in model.parameters())} parameters, "
              f"median of repeats {statistics.median(values):.3f} ({runs})")


if __name__ == "__main__":
    main()
