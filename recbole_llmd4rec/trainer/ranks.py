"""RecBole's trainer on several processes, CPUs included: the model wrapped in DistributedDataParallel
the way gloo accepts it, and evaluation over every user exactly once.

RecBole 1.2.1 wraps with ``device_ids=[local_rank]``, which torch refuses for a model on the CPU;
and it averages each rank's rounded metrics weighted by its count of batches, over a sampler that
repeats the first users to even out the ranks. Here each rank's per-user rows are gathered back
into the data set's order, the repeated ones dropped, and every rank computes the metrics of the
whole set: the numbers a single process gives, and the same early-stopping decision on every rank.
"""

import torch
import torch.distributed as dist
from recbole.evaluator import Collector
from recbole.trainer import AbstractTrainer, Trainer
from torch.nn.parallel import DistributedDataParallel

from recbole_llmd4rec.distributed import barrier, from_rank0, several
from recbole_llmd4rec.errors import LLMD4RecError

PER_USER_ROWS = ("rec.topk", "rec.meanrank", "rec.score", "rec.items", "data.label")  # what eval_batch_collect keeps


class DDPWrap(AbstractTrainer):
    """AbstractTrainer whose DDP wrap also works on CPUs: ``device_ids`` only for a GPU. It sits
    between RecBole's Trainer and AbstractTrainer in a plugin trainer's MRO (Trainer calls it).
    ``wraps_model = False``: a trainer that trains through other trainers (Algorithm 1) wraps nothing."""

    wraps_model = True

    def __init__(self, config, model):
        self.config = config
        self.model = model
        if several(config) and self.wraps_model:
            on_gpu = config["device"].type == "cuda"
            if on_gpu:  # SyncBatchNorm runs on GPUs only
                self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            # DDP starts every rank from rank 0's weights (ranks build their models from seeds of their own)
            self.distributed_model = DistributedDataParallel(
                self.model, device_ids=[config["device"].index] if on_gpu else None)


def in_dataset_order(parts, total):
    """The rows of every rank (``parts``, in rank order) in the data set's order, each user once.

    RecBole's distributed sampler (no shuffle) gives rank r the users r, r + W, r + 2W, ... of the
    list padded to a multiple of W with its first users, so every rank holds the same count of rows:
    row i of rank r is user i * W + r, and the rows past ``total`` are the padding."""
    return torch.stack(parts, dim=1).flatten(0, 1)[:total]


def rows_in_dataset_order(local, total):
    """This rank's rows of one evaluation and every other rank's, gathered, in the data set's order."""
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else local.device
    local = local.to(device).contiguous()
    parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, local)
    return in_dataset_order(parts, total).cpu()


class RankGatheringCollector(Collector):
    """RecBole's Collector that hands over the rows of every rank (set ``sample_size`` first)."""

    sample_size = None

    def get_data_struct(self):
        struct = super().get_data_struct()
        world_size = dist.get_world_size()
        per_rank = -(-self.sample_size // world_size)  # what the sampler gives every rank
        for key in PER_USER_ROWS:
            if key not in struct:
                continue
            if len(struct[key]) != per_rank:
                raise LLMD4RecError(f"several processes evaluate with full ranking only (eval_args mode: full); "
                                    f"'{key}' holds {len(struct[key])} rows for {per_rank} users on this rank")
            struct[key] = rows_in_dataset_order(struct[key], self.sample_size)
        return struct


class RankGatheringTrainer(Trainer, DDPWrap):
    """RecBole's Trainer, on several processes: wrapped as gloo accepts, evaluating every user once;
    in one process it is RecBole's Trainer."""

    def __init__(self, config, model):
        super().__init__(config, model)
        if several(config):
            self.eval_collector = RankGatheringCollector(config)
            # RecBole names the best epoch's file by each process's clock: every rank takes rank 0's name
            self.saved_model_file = from_rank0(self.saved_model_file, config)

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if several(self.config) and eval_data:
            self.eval_collector.sample_size = eval_data.sample_size
            if load_best_model:
                barrier(self.config)  # rank 0 wrote the file every rank reads
        return super().evaluate(eval_data, load_best_model, model_file, show_progress)

    def _map_reduce(self, result, num_sample):
        return result  # computed over the gathered rows of every rank already
