"""How sharp a trained model's softmax is at the distillation temperatures: the teacher
distribution a student is asked to match (Eq. 3 with T1, Eq. 7 with T2).

    python benchmarks/teacher_sharpness.py MODEL_FILE [MODEL_FILE ...] [--temperatures=0.6,0.2]

For the first test batch of each checkpoint (any RecBole or plugin checkpoint), over all items:
the mean of (top logit - mean logit), and at each temperature the mean top-1 probability and
entropy (nats) of softmax(logits / T).
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recbole_llmd4rec.errors import LLMD4RecError  # noqa: E402
from recbole_llmd4rec.losses import teacher_distribution  # noqa: E402
from recbole_llmd4rec.quick_start import load_data_and_model  # noqa: E402


def sharpness(model_file, temperatures):
    config, model, _, _, _, test_data = load_data_and_model(model_file)
    model.eval()
    interaction = next(iter(test_data))[0].to(config["device"])
    with torch.inference_mode():
        logits = model.full_sort_predict(interaction).view(len(interaction), -1)[:, 1:]  # item 0 is padding
    lines = [f"{model_file}: {len(interaction)} users, {logits.shape[1]} items, "
             f"top - mean logit {(logits.max(1).values - logits.mean(1)).mean():.2f}"]
    for temperature in temperatures:
        probs, neg_entropy = teacher_distribution(logits, temperature)
        lines.append(f"  T={temperature}: top-1 probability {probs.max(1).values.mean():.3f}, "
                     f"entropy {-neg_entropy.mean():.2f} nats")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_files", nargs="+")
    parser.add_argument("--temperatures", default="0.6,0.2")
    args = parser.parse_args()
    try:
        temperatures = [float(t) for t in args.temperatures.split(",")]
    except ValueError:
        temperatures = []
    if not temperatures or min(temperatures) <= 0:
        parser.error(f"--temperatures must be comma-separated numbers > 0 like 0.6,0.2, got {args.temperatures!r}")
    try:
        for model_file in args.model_files:
            print("\n".join(sharpness(model_file, temperatures)))
    except LLMD4RecError as exc:  # a missing or foreign checkpoint
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
