"""Training-step speed: stock RecBole SASRec vs SASRecD (no teacher, cached teacher) and
E4SRec on the embedded tiny backbone: reference step (padded batch, the instruction computed for
every sequence), length groups, length groups + the instruction's keys/values shared by the batch,
+ eager attention. Then the inference side: a teacher pass over the same batches and RecBole's
full-ranking evaluation of the valid split, stock SASRec against SASRecD.

Everything runs in one process on the same batches of one data set: a warm-up, then N timed
optimizer steps per variant; it prints median ms per step, samples per second and the ratio
to the reference. Stock RecBole runs as users run it: with the autograd anomaly detection
RecBole 1.2.1 switches on at import. Before timing, the losses of each fast path and its
reference are compared on the same batch and weights (eval mode, so no dropout differs);
a relative difference above 1e-5 stops the script with an error.

    python benchmarks/train_step.py --dataset=beauty --data_path=dataset/ --steps=30
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recbole.model.sequential_recommender.sasrec import SASRec  # noqa: E402
from recbole.trainer import Trainer  # noqa: E402
from recbole.utils import init_seed  # noqa: E402

from recbole_llmd4rec import Config  # noqa: E402
from recbole_llmd4rec.distillers import KLDistiller  # noqa: E402
from recbole_llmd4rec.model.e4srec import E4SRec  # noqa: E402
from recbole_llmd4rec.model.sasrecd import SASRecD  # noqa: E402
from recbole_llmd4rec.quick_start import load_dataset  # noqa: E402
from recbole_llmd4rec.teacher import INSTANCE_ID, TeacherStore, add_instance_ids  # noqa: E402

RELATIVE_TOLERANCE = 1e-5
STOCK = "RecBole SASRec (stock, anomaly mode on)"
E4SREC_REFERENCE = "E4SRec tiny, reference (padded, prompt per sequence, sdpa)"
# E4SRec variants: name, length_groups, share_prompt, llm_attention; each adds one speed-up.
E4SREC_VARIANTS = [
    (E4SREC_REFERENCE, 0, False, "sdpa"),
    ("E4SRec tiny, + length groups", 4, False, "sdpa"),
    ("E4SRec tiny, + shared prompt", 4, True, "sdpa"),
    ("E4SRec tiny, + eager attention (defaults)", 4, True, "auto"),
]
# variant: (the variant it is compared with, how the ratio reads, whether it is a slowdown)
RATIOS = {
    "SASRecD, no teacher": (STOCK, "the throughput of stock SASRec", False),
    "SASRecD, cached teacher": ("SASRecD, no teacher", "the step time without teacher", True),
    **{name: (E4SREC_REFERENCE, "the throughput of the reference step", False) for name, *_ in E4SREC_VARIANTS[1:]},
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default="dataset/")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--llm_cache_dir", default="saved/llm_cache")
    parser.add_argument("--output", default=None, help="also write the results as json here")
    return parser.parse_args()


def build(model_class, config, dataset, seed):
    init_seed(seed, True)
    return model_class(config, dataset)


def time_steps(model, batches, loss_of, warmup, anomaly=False):
    """Median seconds per optimizer step over ``batches`` (after ``warmup`` steps)."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    times = []
    with torch.autograd.set_detect_anomaly(anomaly):
        for index, batch in enumerate(batches[:warmup] + batches):
            started = time.perf_counter()
            optimizer.zero_grad()
            loss_of(model, batch).backward()
            optimizer.step()
            if index >= warmup:
                times.append(time.perf_counter() - started)
    return statistics.median(times)


def check_same_loss(name, reference_model, fast_model, batch, loss_of):
    reference_model.eval(), fast_model.eval()
    with torch.no_grad():
        reference, fast = loss_of(reference_model, batch).item(), loss_of(fast_model, batch).item()
    difference = abs(fast - reference) / max(abs(reference), 1e-12)
    print(f"loss check {name}: reference {reference:.8f}, fast {fast:.8f}, relative difference {difference:.2e}")
    if difference > RELATIVE_TOLERANCE:
        raise SystemExit(f"error: {name}: losses differ by {difference:.2e} > {RELATIVE_TOLERANCE:.0e}")


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    common = {"data_path": args.data_path, "train_batch_size": args.batch_size, "seed": args.seed, "state": "ERROR"}
    sasrec_config = Config("SASRecD", args.dataset, config_dict=common)
    dataset, train_data, valid_data, _ = load_dataset(sasrec_config)
    train_dataset = train_data._dataset
    add_instance_ids(train_dataset)
    generator = np.random.default_rng(args.seed)
    rows = generator.permutation(len(train_dataset))[: (args.steps) * args.batch_size]
    batches = [train_dataset[np.sort(rows[i : i + args.batch_size])] for i in range(0, len(rows), args.batch_size)]
    n_items = train_dataset.item_num

    # A cached teacher: a float16 store as the trainer builds it, filled for these batches.
    Path(args.llm_cache_dir).mkdir(parents=True, exist_ok=True)
    distiller = KLDistiller(sasrec_config["distill_temperature"], n_items - 1)
    store = TeacherStore(Path(args.llm_cache_dir) / "benchmark_teacher", len(train_dataset), distiller)
    for batch in batches:
        teacher_logits = torch.from_numpy(generator.standard_normal((len(batch), n_items - 1)).astype(np.float32))
        store.write(batch[INSTANCE_ID].numpy(), distiller.outputs_from_logits(teacher_logits, batch["item_id"] - 1))

    def plain(model, batch):
        return model.calculate_loss(batch)

    def with_teacher(model, batch):
        return model.calculate_loss(batch, teacher=store.lookup(batch[INSTANCE_ID], "cpu"))

    stock = build(SASRec, sasrec_config, train_dataset, args.seed)
    sasrecd = build(SASRecD, sasrec_config, train_dataset, args.seed)
    check_same_loss("SASRecD vs RecBole SASRec", stock, sasrecd, batches[0], plain)

    e4srec_config = Config("E4SRec", args.dataset, config_dict={**common, "llm_cache_dir": args.llm_cache_dir,
                                                                 "lora_dropout": 0.0})
    e4srec = {}
    for name, groups, share_prompt, attention in E4SREC_VARIANTS:
        e4srec_config["length_groups"], e4srec_config["share_prompt"] = groups, share_prompt
        e4srec_config["llm_attention"] = attention
        e4srec[name] = build(E4SRec, e4srec_config, train_dataset, args.seed)
        if name != E4SREC_REFERENCE:
            check_same_loss(f"{name} vs reference", e4srec[E4SREC_REFERENCE], e4srec[name], batches[0], plain)

    variants = [
        (STOCK, stock, plain, True),
        ("SASRecD, no teacher", build(SASRecD, sasrec_config, train_dataset, args.seed), plain, False),
        ("SASRecD, cached teacher", build(SASRecD, sasrec_config, train_dataset, args.seed), with_teacher, False),
        *[(name, model, plain, False) for name, model in e4srec.items()],
    ]
    results = []
    for name, model, loss_of, anomaly in variants:
        seconds = time_steps(model, batches, loss_of, args.warmup, anomaly)
        results.append({"variant": name, "ms_per_step": 1000 * seconds,
                        "samples_per_second": args.batch_size / seconds})
    store.close()

    # Inference: the teacher pass of a distillation phase (scores of every item for the same
    # batches, under inference_mode) and RecBole's full-ranking evaluation of the valid split.
    inference = []
    for name, model in (("RecBole SASRec (stock)", stock), ("SASRecD", sasrecd)):
        model.eval()
        with torch.inference_mode():
            for batch in batches[: args.warmup]:
                model.full_sort_predict(batch)
            started = time.perf_counter()
            for batch in batches:
                model.full_sort_predict(batch)
            teacher_pass = time.perf_counter() - started
        started = time.perf_counter()
        Trainer(sasrec_config, model).evaluate(valid_data, load_best_model=False)
        inference.append({"model": name, "teacher_pass_s": teacher_pass,
                          "valid_evaluation_s": time.perf_counter() - started})

    print(f"\n{args.dataset}, batch {args.batch_size}, {args.threads} threads, {args.steps} steps after "
          f"{args.warmup} warm-up, seed {args.seed}, torch {torch.__version__}\n")
    print("| variant | median ms/step | samples/s | ratio |\n|---|---|---|---|")
    by_name = {row["variant"]: row for row in results}
    for row in results:
        ratio_text = ""
        if row["variant"] in RATIOS:
            reference_name, reading, slowdown = RATIOS[row["variant"]]
            reference_ms = by_name[reference_name]["ms_per_step"]
            row["ratio"] = row["ms_per_step"] / reference_ms if slowdown else reference_ms / row["ms_per_step"]
            ratio_text = f"{row['ratio']:.2f}x {reading}"
        print(f"| {row['variant']} | {row['ms_per_step']:.1f} | {row['samples_per_second']:.0f} | {ratio_text} |")
    print(f"\n| model | teacher pass over the {len(batches)} batches, s | full-ranking evaluation of valid, s |"
          "\n|---|---|---|")
    for row in inference:
        print(f"| {row['model']} | {row['teacher_pass_s']:.2f} | {row['valid_evaluation_s']:.2f} |")
    if args.output:
        Path(args.output).write_text(json.dumps({"args": vars(args), "results": results, "inference": inference},
                                                indent=2))


if __name__ == "__main__":
    main()
