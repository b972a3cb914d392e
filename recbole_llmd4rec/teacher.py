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
"""

import os
import time
from logging import getLogger

import numpy as np
import torch
from recbole.utils import set_color
from tqdm import tqdm

INSTANCE_ID = "instance_id"


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
              show_progress=False):
        """One inference pass of ``teacher`` over all training instances."""
        n_instances = add_instance_ids(train_dataset)
        store = cls(path, n_instances, distiller, memory_limit)
        started = time.time()
        was_training = teacher.training
        teacher.eval()
        starts = range(0, n_instances, batch_size)
        if show_progress:
            starts = tqdm(starts, ncols=100, desc=set_color("Teacher", "pink"))
        try:
            with torch.inference_mode():
                for start in starts:
                    batch = train_dataset[np.arange(start, min(start + batch_size, n_instances))].to(device)
                    store.write(batch[INSTANCE_ID].cpu().numpy(), distiller.teacher_outputs(teacher, batch))
                    store.forward_passes += 1
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
                shape = (self.n_instances, *values.shape[1:])
                if self.nbytes + values.dtype.itemsize * int(np.prod(shape)) <= self.memory_limit:
                    self.arrays[name] = np.empty(shape, dtype=values.dtype)
                else:
                    self.files.append(self._file(name))
                    self.arrays[name] = np.lib.format.open_memmap(self.files[-1], mode="w+", dtype=values.dtype,
                                                                  shape=shape)
            self.arrays[name][rows] = values

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
