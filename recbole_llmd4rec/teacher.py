"""Teacher outputs for one distillation phase, computed once and looked up per batch.

A frozen teacher's outputs do not change within a phase (Algorithm 1, steps 3b/3c), so they
are computed in one pass over the training instances, in instance order, under
``torch.inference_mode`` with the teacher in eval mode. What is kept is what the phase's
distiller asks for (``distillers.py``): for LLMD4Rec's KL, the teacher's distribution at the
student's temperature, its ``sum p log p`` and its rank of each instance's target item, so a
training step does no teacher-side work; for DLLM2Rec the teacher's top-K items and scores;
for LEADER its user states.

Each output (N rows, written once, read per batch, dropped when the phase ends) is kept in
memory while all of them fit in ``memory_limit`` bytes, and in a memory-mapped ``.npy`` file
beside ``path`` otherwise: LLMD4Rec's full distribution over Beauty's 12,101 items is
131,413 x 12,101 float16 numbers, 3 GB, whose build into a file is mostly disk writes
(BENCHMARKS.md, "Teacher store build").

Batches are matched to stored rows by the ``instance_id`` field the trainer adds to the
training set, so RecBole's shuffling cannot misalign them.

On several processes each rank computes a contiguous share of the batches and then receives the
others' rows, so every rank holds the store one process would have built, in the same batches.
"""

import os
import time
from logging import getLogger

import numpy as np
import torch
import torch.distributed as dist
from recbole.utils import set_color
from tqdm import tqdm

INSTANCE_ID = "instance_id"
MESSAGE_BYTES = 2**26  # rows a rank sends in one broadcast when ranks exchange their shares


def add_instance_ids(train_dataset):
    """Number the training instances 0..N-1 in a field every batch then carries."""
    from recbole.data.interaction import Interaction

    if INSTANCE_ID not in train_dataset.inter_feat:
        count = len(train_dataset.inter_feat)
        train_dataset.inter_feat.update(Interaction({INSTANCE_ID: torch.arange(count)}))
    return len(train_dataset.inter_feat)


class TeacherStore:
    """One frozen teacher's outputs for every training instance of one phase."""

    def __init__(self, path, n_instances, distiller, memory_limit=0):
        self.path = str(path)
        self.n_instances = n_instances
        self.distiller = distiller
        self.memory_limit = memory_limit  # bytes of outputs kept in memory; beyond, files
        self.arrays = {}  # output name -> (N, ...) array or memory map, made at the first write
        self.files = []  # the memory-mapped files, deleted by close()
        self.forward_passes = 0  # teacher batches computed; checked by the tests
        self.build_seconds = 0.0

    @classmethod
    def build(cls, teacher, train_dataset, path, batch_size, device, distiller, memory_limit=0,
              show_progress=False, ranks=(0, 1)):
        """One inference pass of ``teacher`` over all training instances; ``ranks``: (this rank,
        world size) of several processes, each computing its share."""
        n_instances = add_instance_ids(train_dataset)
        store = cls(path, n_instances, distiller, memory_limit)
        started = time.time()
        was_training = teacher.training
        teacher.eval()
        rank, world_size = ranks
        all_starts = range(0, n_instances, batch_size)
        starts = _share(all_starts, rank, world_size)
        if show_progress:
            starts = tqdm(starts, ncols=100, desc=set_color("Teacher", "pink"))
        try:
            with torch.inference_mode():
                for start in starts:
                    batch = train_dataset[np.arange(start, min(start + batch_size, n_instances))].to(device)
                    store.write(batch[INSTANCE_ID].cpu().numpy(), distiller.teacher_outputs(teacher, batch))
                    store.forward_passes += 1
            if world_size > 1:
                store._exchange_shares(all_starts, batch_size, ranks)
        except BaseException:
            store.close()  # no half-written files left behind
            raise
        finally:
            teacher.train(was_training)
        store.build_seconds = time.time() - started
        shapes = ", ".join(f"{name} {tuple(array.shape[1:])} {array.dtype}" for name, array in store.arrays.items())
        getLogger().info(f"teacher store: {n_instances:,} instances x ({shapes}), "
                         f"{store.nbytes / 2**20:.1f} MiB, built in {store.build_seconds:.1f} s")
        return store

    def _file(self, name):
        return f"{self.path}.{name}.npy"

    def write(self, rows, outputs):
        """Store ``outputs`` (name -> tensor with one row per instance) at instance ``rows``."""
        for name, tensor in outputs.items():
            values = tensor.detach().cpu().numpy()
            if name not in self.arrays:
                self._allocate(name, values.shape[1:], values.dtype)
            self.arrays[name][rows] = values

    def _allocate(self, name, row_shape, dtype):
        shape = (self.n_instances, *row_shape)
        if self.nbytes + dtype.itemsize * int(np.prod(shape)) <= self.memory_limit:
            self.arrays[name] = np.empty(shape, dtype=dtype)
        else:
            self.files.append(self._file(name))
            self.arrays[name] = np.lib.format.open_memmap(self.files[-1], mode="w+", dtype=dtype, shape=shape)

    def _exchange_shares(self, all_starts, batch_size, ranks):
        """Every rank's rows to every rank (``build`` on several processes), in messages of at most
        ``MESSAGE_BYTES``. Rank 0 always has a share; a rank without one takes its outputs' shapes."""
        rank, world_size = ranks
        layout = [{name: (array.shape[1:], array.dtype.str) for name, array in self.arrays.items()}]
        dist.broadcast_object_list(layout, src=0)
        for name, (row_shape, dtype) in layout[0].items():
            if name not in self.arrays:
                self._allocate(name, row_shape, np.dtype(dtype))
        on_gpu = dist.get_backend() == "nccl"  # NCCL sends from GPU memory only
        for owner in range(world_size):
            owned = _share(all_starts, owner, world_size)
            if not owned:
                continue
            first, end = owned[0], min(owned[-1] + batch_size, self.n_instances)
            for array in self.arrays.values():
                rows = max(1, MESSAGE_BYTES // max(1, array[:1].nbytes))
                for begin in range(first, end, rows):
                    block = np.ascontiguousarray(array[begin:min(begin + rows, end)]) if owner == rank else \
                        np.empty((min(begin + rows, end) - begin, *array.shape[1:]), dtype=array.dtype)
                    message = torch.from_numpy(block)
                    if on_gpu:
                        message = message.cuda()
                    dist.broadcast(message, src=owner)
                    if owner != rank:
                        array[begin:begin + len(block)] = message.cpu().numpy()

    @property
    def nbytes(self):
        return sum(array.nbytes for array in self.arrays.values())

    def lookup(self, instance_ids, device):
        """What the student's loss takes for these instances (``distiller.student_targets``)."""
        rows = instance_ids.cpu().numpy()
        stored = {name: torch.from_numpy(array[rows]).to(device) for name, array in self.arrays.items()}
        return self.distiller.student_targets(stored)

    def close(self):
        """Release the outputs and delete the memory-mapped files."""
        self.arrays.clear()
        for file in self.files:
            if os.path.exists(file):
                os.remove(file)
        self.files.clear()


def _share(starts, rank, world_size):
    """Rank ``rank``'s contiguous block of the batch starts (the first ranks get one more)."""
    per_rank = -(-len(starts) // world_size)
    return starts[rank * per_rank:(rank + 1) * per_rank]
