"""Trainers of the plugin. ``get_trainer`` picks ``<Model>Trainer`` from here first.

One module per job: ``resumable``, ``phase``, ``mutual`` (Algorithm 1), ``run_state`` (run
identity and resume machinery), ``s3rec``; the names below are the package's.

- ``ResumableTrainer``: RecBole's Trainer with atomic checkpoints and a training state saved
  after every validated epoch, from which a killed ``fit`` continues; what ``get_trainer``
  gives the models RecBole trains with its ``Trainer`` (SASRec, GRU4Rec, SASRecD, ...).
- ``PhaseTrainer``: the ResumableTrainer for one student, optionally with a teacher store
  (teacher logits looked up per batch) and gradient accumulation over micro batches.
- ``E4SRecTrainer``: the PhaseTrainer E4SRec gets alone (micro batches, no teacher).
- ``MutualDistillTrainer`` (``--model=LLMD4Rec``): Algorithm 1 of LLMD4Rec, resumable.
- ``S3RecTrainer``: RecBole's S3Rec trainer, pre-training then fine-tuning in one run, resumable.
"""

from recbole_llmd4rec.trainer.mutual import DIRECTIONS, TEACHER_STORES, LLMD4RecTrainer, MutualDistillTrainer
from recbole_llmd4rec.trainer.phase import (
    E4SRecTrainer, PhaseTrainer, TrainingLossIsNaN, accumulate_over_micro_batches, phase_record,
    refuse_scaler_with_micro_batches,
)
from recbole_llmd4rec.trainer.resumable import RESUME_KEYS, ResumableTrainer, random_states, set_random_states
from recbole_llmd4rec.trainer.run_state import (
    FIRST_ROUND_READING, PHASES_FILE, ROUND_STATE_FILE, ROUND_STATE_KEYS, RUN_IRRELEVANT_KEYS, RUN_STATE_KEYS,
    differing_settings, run_fingerprint, run_settings,
)
from recbole_llmd4rec.trainer.s3rec import S3RecTrainer

__all__ = [
    "DIRECTIONS", "E4SRecTrainer", "FIRST_ROUND_READING", "LLMD4RecTrainer", "MutualDistillTrainer", "PHASES_FILE",
    "PhaseTrainer", "RESUME_KEYS", "ROUND_STATE_FILE", "ROUND_STATE_KEYS", "RUN_IRRELEVANT_KEYS", "RUN_STATE_KEYS",
    "ResumableTrainer", "S3RecTrainer", "TEACHER_STORES", "TrainingLossIsNaN", "accumulate_over_micro_batches",
    "differing_settings", "phase_record", "random_states", "refuse_scaler_with_micro_batches", "run_fingerprint",
    "run_settings", "set_random_states",
]
