"""Training throughput on one machine's cores: P processes x T threads (RecBole's multi-process mode,
DDP over gloo) against 1 process x P*T threads, for SASRecD and E4SRec on the same data set.

Each layout trains the same global batches (``train_batch_size`` over all ranks; each rank takes
its share, as the run script's ``--nproc`` does): a few warm-up steps, then ``--steps`` timed
optimizer steps of the model's own trainer. It prints training instances per second per layout
and the ratio of the multi-process layout to the one-process one. Data loading, model building
and evaluation are not timed.

    python benchmarks/processes_vs_threads.py --dataset=beauty --data_path=dataset/ --steps=30
    python benchmarks/processes_vs_threads.py --dataset=beauty --data_path=dataset/ --processes=2 --threads=1 \\
        --models=SASRecD --train_batch_size=512
"""

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WARMUP_STEPS = 3


class FirstBatches:
    """The first ``count`` batches of a train loader after ``skip``, as ``_train_epoch`` reads a loader."""

    def __init__(self, loader, count, skip=0):
        self.loader, self.count, self.skip = loader, count, skip
        self.shuffle, self.sampler = loader.shuffle, loader.sampler

    def __iter__(self):
        for index, batch in enumerate(self.loader):
            if index >= self.skip + self.count:
                return
            if index >= self.skip:
                yield batch

    def __len__(self):
        return self.count


def free_port():
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def measure(local_rank, model_name, args, overrides, processes, threads, port, result_file):
    """One rank (or the one process): time ``args.steps`` training steps; rank 0 writes the result."""
    import torch
    import torch.distributed as dist
    from recbole.utils import init_seed

    from recbole_llmd4rec import Config
    from recbole_llmd4rec.quick_start import load_dataset
    from recbole_llmd4rec.utils import get_model, get_trainer

    torch.set_num_threads(threads)
    config_dict = {"data_path": args.data_path, "checkpoint_dir": tempfile.mkdtemp(), "show_progress": False,
                   "state": "warning"}
    if processes > 1:
        config_dict.update(local_rank=local_rank, nproc=processes, world_size=processes, ip="localhost", port=port,
                           offset=0)
    config_files = args.config_files.split() if args.config_files else []
    config = Config(model_name, args.dataset, config_files, config_dict, cmd_args=overrides, check_keys=False)
    init_seed(config["seed"], config["reproducibility"])
    _, train_data, _, _ = load_dataset(config)
    model = get_model(model_name)(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], model_name)(config, model)
    trainer._train_epoch(FirstBatches(train_data, WARMUP_STEPS), 0)
    if processes > 1:
        dist.barrier()
    started = time.perf_counter()
    trainer._train_epoch(FirstBatches(train_data, args.steps, skip=WARMUP_STEPS), 1)
    if processes > 1:
        dist.barrier()  # the step ends when the slowest rank's does
    seconds = time.perf_counter() - started
    if local_rank == 0:
        Path(result_file).write_text(json.dumps({
            "model": model_name, "processes": processes, "threads": threads, "steps": args.steps,
            "global_batch": config["train_batch_size"], "seconds": seconds,
            "instances_per_second": args.steps * config["train_batch_size"] / seconds,
        }))
    if processes > 1:
        dist.destroy_process_group()


def run_layout(model_name, args, overrides, processes, threads):
    import torch.multiprocessing as mp

    # every process starts with this many threads (torch's pools read it at start-up)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    result_file = Path(tempfile.mkdtemp()) / "result.json"
    # one process too starts fresh (a spawned interpreter), so both layouts start alike
    mp.spawn(measure, args=(model_name, args, overrides, processes, threads, free_port(), str(result_file)),
             nprocs=processes, join=True)
    return json.loads(result_file.read_text())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--data_path", default="dataset/")
    parser.add_argument("--config_files", default=None, help="space-separated yaml files, later ones win")
    parser.add_argument("--models", default="SASRecD,E4SRec")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="threads per process of the multi-process layout")
    parser.add_argument("--steps", type=int, default=30)
    args, overrides = parser.parse_known_args()
    cores = args.processes * args.threads
    rows = []
    for model_name in args.models.split(","):
        one = run_layout(model_name, args, overrides, 1, cores)
        several = run_layout(model_name, args, overrides, args.processes, args.threads)
        for row in (one, several):
            rows.append(row)
            print(json.dumps(row))
        print(f"{model_name}: {args.processes} processes x {args.threads} thread(s) {several['instances_per_second']:.1f} "
              f"instances/s, 1 process x {cores} threads {one['instances_per_second']:.1f} instances/s: "
              f"{several['instances_per_second'] / one['instances_per_second']:.2f}x")
    return rows


if __name__ == "__main__":
    main()
