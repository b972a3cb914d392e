"""E4SRec's training-step speed per backbone: the embedded tiny-qwen2 against SmolLM2-135M-Instruct
cut to its first k layers (``llm_num_layers``), with E4SRec's defaults (length groups, shared
prompt, eager attention on CPU, float32), at one and at two threads.

Every variant trains on the same batches of the data set's training split: one warm-up step,
then N timed Adam steps. The script prints the median seconds per step and the minutes one epoch
of the data set takes at that speed (its number of training batches times the median). With
``--bfloat16_layers=K`` it also times SmolLM2's first K layers in bfloat16 and prints its loss on
one batch beside float32's at the same weights, so bfloat16 is judged at equal loss as well as
speed. Needs the SmolLM2 backbone (docs/models.md).

    python benchmarks/backbone_step.py --dataset=beauty --data_path=DIR --layers 2 4 8 30 --threads 1 2
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recbole.utils import init_seed  # noqa: E402

from recbole_llmd4rec import Config  # noqa: E402
from recbole_llmd4rec.model.e4srec import E4SRec  # noqa: E402
from recbole_llmd4rec.quick_start import load_dataset  # noqa: E402

SMOLLM2 = "smollm2-135m"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--layers", type=int, nargs="+", default=[2, 4, 8, 30], help="SmolLM2 layer counts k")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant")
    parser.add_argument("--bfloat16_layers", type=int, default=None, help="also time these k layers in bfloat16")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    return parser.parse_args()


def build(base, dataset, **settings):
    config = Config("E4SRec", base["dataset"], None, {**base["overrides"], **settings})
    init_seed(config["seed"], True)
    return E4SRec(config, dataset)


def step_seconds(model, batches):
    """Median seconds of an Adam step over ``batches`` (the first one is the warm-up)."""
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-4)
    times = []
    for batch in batches:
        start = time.perf_counter()
        optimizer.zero_grad()
        model.calculate_loss(batch).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main():
    args = parse_args()
    overrides = {"data_path": args.data_path} if args.data_path else {}
    overrides.update({"show_progress": False, "lora_dropout": 0.0})
    base = {"dataset": args.dataset, "overrides": overrides}
    config = Config("E4SRec", args.dataset, None, overrides)
    _, train_data, _, _ = load_dataset(config)
    batches_per_epoch = len(train_data)
    batches = [batch for batch, _ in zip(train_data, range(args.steps + 1))]
    variants = [("tiny-qwen2", {})] + [(f"{SMOLLM2}, first {k} layers", {"llm_path": SMOLLM2, "llm_num_layers": k})
                                        for k in args.layers]
    if args.bfloat16_layers:
        variants.append((f"{SMOLLM2}, first {args.bfloat16_layers} layers, bfloat16",
                         {"llm_path": SMOLLM2, "llm_num_layers": args.bfloat16_layers, "llm_dtype": "bfloat16"}))
    rows = []
    print(f"{args.dataset}: {batches_per_epoch} training batches of {config['train_batch_size']} per epoch")
    print(f"{'backbone':<42} {'threads':>7} {'s/step':>8} {'min/epoch':>10}")
    for name, settings in variants:
        model = build(base, train_data._dataset, **settings)
        for threads in args.threads:
            torch.set_num_threads(threads)
            seconds = step_seconds(model, batches)
            rows.append({"backbone": name, "threads": threads, "seconds_per_step": round(seconds, 3),
                         "minutes_per_epoch": round(seconds * batches_per_epoch / 60, 1)})
            print(f"{name:<42} {threads:>7} {seconds:>8.3f} {seconds * batches_per_epoch / 60:>10.1f}")
    if args.bfloat16_layers:
        torch.set_num_threads(max(args.threads))
        losses = {}
        for dtype in ("float32", "bfloat16"):
            model = build(base, train_data._dataset, llm_path=SMOLLM2, llm_num_layers=args.bfloat16_layers,
                          llm_dtype=dtype).eval()
            with torch.no_grad():
                losses[dtype] = model.calculate_loss(batches[0]).item()
        print(f"loss on one batch at the same weights: float32 {losses['float32']:.5f}, "
              f"bfloat16 {losses['bfloat16']:.5f}")
        rows.append({"loss_float32": losses["float32"], "loss_bfloat16": losses["bfloat16"]})
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
