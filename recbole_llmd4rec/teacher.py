"""Teacher outputs for one distillation phase, computed once and looked up per batch.

A frozen teacher's logits do not change within a phase (Algorithm 1, steps 3b/3c), so they
are computed in one pass over the training instances, in instance order, under
``torch.inference_mode`` with the teacher in eval mode. What the student's loss needs from
them is fixed too, given the student's temperature T, and is stored instead of the logits
(:class:`~recbole_llmd4rec.losses.TeacherTargets`): the teacher's distribution
``softmax(logits / T)`` over the real items, its ``sum p log p``, and its rank of each
instance's target item, so a training step does no teacher-side work.

- ``full``: every item's probability as float16 in a memory-mapped file (N x items); the KL
  is the exact one of Eq. 3 / Eq. 7 up to float16 rounding of the probabilities
  (relative 5e-4; probabilities below 6e-8 round to 0).
- ``topk``: the teacher's K largest logits' items and their softmax renormalised over those
  K (N x K). The KL then sums over those K items only and pulls the student's mass onto
  them, with no term for how the student orders the remaining items. Memory falls from
  N x items to N x 2K numbers. The teacher's rank of the target is still over all items.

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

from recbole_llmd4rec.losses import TeacherTargets, target_rank, teacher_distribution
from recbole_llmd4rec.model.sasrecd import PADDING_ITEM

INSTANCE_ID = "instance_id"


def add_instance_ids(train_dataset):
    """Number the training instances 0..N-1 in a field every batch then carries."""
    from recbole.data.interaction import Interaction

    if INSTANCE_ID not in train_dataset.inter_feat:
        count = len(train_dataset.inter_feat)
        train_dataset.inter_feat.update(Interaction({INSTANCE_ID: torch.arange(count)}))
    return len(train_dataset.inter_feat)


class TeacherStore:
    """One frozen teacher's targets for every training instance of one phase."""

    def __init__(self, path, n_instances, n_items, topk=None):
        self.path = path
        self.n_instances = n_instances
        self.n_items = n_items  # real items, without RecBole's padding item
        self.topk = topk
        self.forward_passes = 0  # teacher batches computed; checked by the tests
        self.build_seconds = 0.0
        if topk is None:
            self.probs = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n_instances, n_items))
        else:
            self.probs = np.empty((n_instances, topk), dtype=np.float16)
            self.indices = np.empty((n_instances, topk), dtype=np.int64)
        self.neg_entropy = np.empty(n_instances, dtype=np.float32)
        self.target_rank = np.empty(n_instances, dtype=np.int64)

    @classmethod
    def build(cls, teacher, train_dataset, path, batch_size, device, temperature, topk=None, show_progress=False):
        """One inference pass of ``teacher`` (with ``item_logits``) over all training instances,
        stored for a student that distils at ``temperature``."""
        n_instances = add_instance_ids(train_dataset)
        store = cls(path, n_instances, teacher.n_items - (PADDING_ITEM + 1), topk)
        started = time.time()
        was_training = teacher.training
        teacher.eval()
        starts = range(0, n_instances, batch_size)
        if show_progress:
            starts = tqdm(starts, ncols=100, desc=set_color("Teacher", "pink"))
        with torch.inference_mode():
            for start in starts:
                batch = train_dataset[np.arange(start, min(start + batch_size, n_instances))].to(device)
                item_logits = teacher.item_logits(batch).float()[:, PADDING_ITEM + 1 :]
                target = batch[teacher.POS_ITEM_ID] - (PADDING_ITEM + 1)
                store.write(batch[INSTANCE_ID].cpu().numpy(), item_logits, target, temperature)
                store.forward_passes += 1
        teacher.train(was_training)
        store.build_seconds = time.time() - started
        getLogger().info(
            f"teacher store: {n_instances:,} instances x "
            f"{'%d items (full, float16)' % store.n_items if topk is None else 'top-%d' % topk}, "
            f"{store.nbytes / 2**20:.1f} MiB, built in {store.build_seconds:.1f} s"
        )
        return store

    def write(self, rows, item_logits, target, temperature):
        """Store the targets of instances ``rows`` from the teacher's logits over the real items
        (B, n_items) and the targets' indices among them (B,)."""
        self.target_rank[rows] = target_rank(item_logits, target).cpu().numpy()
        if self.topk is None:
            probs, neg_entropy = teacher_distribution(item_logits, temperature)
        else:
            values, indices = item_logits.topk(self.topk, dim=1)
            probs, neg_entropy = teacher_distribution(values, temperature)
            self.indices[rows] = indices.cpu().numpy()
        self.probs[rows] = probs.cpu().numpy().astype(np.float16)
        self.neg_entropy[rows] = neg_entropy.cpu().numpy()

    @property
    def nbytes(self):
        arrays = [self.probs, self.neg_entropy, self.target_rank] + ([self.indices] if self.topk else [])
        return sum(array.nbytes for array in arrays)

    def lookup(self, instance_ids, device):
        """:class:`TeacherTargets` (probabilities in float32) for the given instances."""
        rows = instance_ids.cpu().numpy()
        # float16 -> float32 in torch: ~2.4x faster than numpy's astype on these row blocks.
        probs = torch.from_numpy(self.probs[rows])
        if self.topk is not None:
            probs = torch.zeros(len(rows), self.n_items, dtype=probs.dtype).scatter_(
                1, torch.from_numpy(self.indices[rows]), probs)
        return TeacherTargets(
            probs.to(device).float(),
            torch.from_numpy(self.neg_entropy[rows]).to(device),
            torch.from_numpy(self.target_rank[rows]).to(device),
        )

    def close(self):
        """Release the memory map and delete its file."""
        if self.topk is None:
            del self.probs
            if os.path.exists(self.path):
                os.remove(self.path)
