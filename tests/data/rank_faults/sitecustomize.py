"""Read at start-up by the ranks of tests/test_distributed.py's multi-process runs (its folder is put
on PYTHONPATH there): lists what a run trains, and kills a rank at a chosen point.

LLMD4REC_TEST_TRAINED=<file>: rank 0 appends "step <name>" for every LLMD4Rec step it trains (not
those a resumed run skips) and "epoch <phase> <k>" for every epoch a phase validates.
LLMD4REC_TEST_KILL="<rank>:<phase>:<k>": that rank is killed (SIGKILL) right after it saved the
training state of <phase> after epoch <k>.
"""

import os

TRAINED = os.environ.get("LLMD4REC_TEST_TRAINED")
KILL = os.environ.get("LLMD4REC_TEST_KILL")

if TRAINED or KILL:
    import signal

    from recbole_llmd4rec.distributed import global_rank
    from recbole_llmd4rec.trainer.resumable import ResumableTrainer
    from recbole_llmd4rec.trainer.run_state import RunStateMixin

    def listed(line, config):
        if TRAINED and global_rank(config) == 0:
            with open(TRAINED, "a", encoding="utf-8") as trained:
                trained.write(line + "\n")

    run_step = RunStateMixin._run_step
    save_training_state = ResumableTrainer._save_training_state

    def listed_step(self, name, step, ends_round=None):
        if name not in self.finished_steps:
            listed(f"step {name}", self.config)
        run_step(self, name, step, ends_round)

    def listed_epoch(self, epoch_idx, train_data):
        save_training_state(self, epoch_idx, train_data)
        phase = self.resume_file.name.removesuffix("_training.pth")
        listed(f"epoch {phase} {epoch_idx}", self.config)
        if KILL and KILL == f"{global_rank(self.config)}:{phase}:{epoch_idx}":
            os.kill(os.getpid(), signal.SIGKILL)

    RunStateMixin._run_step = listed_step
    ResumableTrainer._save_training_state = listed_epoch
