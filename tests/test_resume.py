"""Training killed between epochs resumes where it stopped and ends as an uninterrupted run."""

import time

import pytest

from recbole_llmd4rec import run_llmd4rec
from recbole_llmd4rec.errors import LLMD4RecError
from recbole_llmd4rec.quick_start import load_checkpoint
from recbole_llmd4rec.teacher import TeacherStore
from recbole_llmd4rec.trainer import RESUME_KEYS, MutualDistillTrainer, ResumableTrainer, S3RecTrainer

EPOCHS = 3
PRE_FIT_SECONDS = 2.0  # added to a phase's work before its first epoch


def _kill_after_saving(monkeypatch, epoch, file_prefix=""):
    """Make training raise KeyboardInterrupt right after the state of ``epoch`` is saved."""
    original = ResumableTrainer._save_training_state

    def save_then_die(self, epoch_idx, train_data):
        original(self, epoch_idx, train_data)
        if epoch_idx == epoch and self.resume_file.name.startswith(file_prefix):
            raise KeyboardInterrupt

    monkeypatch.setattr(ResumableTrainer, "_save_training_state", save_then_die)
    return original


def _sasrecd(tiny, workdir, folder):
    config_dict = {**tiny["config_dict"], "checkpoint_dir": str(workdir / folder), "epochs": EPOCHS,
                   "stopping_step": 10}
    return run_llmd4rec("SASRecD", "tiny", tiny["config_file_list"], config_dict)


@pytest.mark.parametrize("killed_epoch", [0, EPOCHS - 1])
def test_a_killed_run_resumes_and_ends_as_the_uninterrupted_one(tiny, workdir, monkeypatch, killed_epoch):
    uninterrupted = _sasrecd(tiny, workdir, "whole")
    original = _kill_after_saving(monkeypatch, killed_epoch)
    with pytest.raises(KeyboardInterrupt):
        _sasrecd(tiny, workdir, "killed")
    assert len(list((workdir / "killed").glob("*.resume.pth"))) == 1
    monkeypatch.setattr(ResumableTrainer, "_save_training_state", original)

    trained_epochs = []
    original_epoch = ResumableTrainer._train_epoch
    monkeypatch.setattr(ResumableTrainer, "_train_epoch",
                        lambda self, *a, **k: trained_epochs.append(a[1]) or original_epoch(self, *a, **k))
    resumed = _sasrecd(tiny, workdir, "killed")
    assert trained_epochs == list(range(killed_epoch + 1, EPOCHS))
    assert resumed["test_result"] == uninterrupted["test_result"]
    assert resumed["best_valid_result"] == uninterrupted["best_valid_result"]
    assert resumed["train_seconds"] > 0
    assert not list((workdir / "killed").glob("*.resume.pth"))  # gone once training ended


def test_an_unreadable_training_state_is_one_clear_error(tiny, workdir, monkeypatch):
    original = _kill_after_saving(monkeypatch, 0)
    with pytest.raises(KeyboardInterrupt):
        _sasrecd(tiny, workdir, "broken")
    monkeypatch.setattr(ResumableTrainer, "_save_training_state", original)
    resume_file = next((workdir / "broken").glob("*.resume.pth"))
    resume_file.write_bytes(b"not a checkpoint")
    with pytest.raises(LLMD4RecError, match="cannot read checkpoint .*; delete .* to start this training over"):
        _sasrecd(tiny, workdir, "broken")


def test_a_phase_killed_mid_way_resumes_inside_the_phase(tiny, workdir, monkeypatch, tmp_path_factory):
    config_dict = {**tiny["config_dict"], "llm_cache_dir": str(tmp_path_factory.mktemp("llm_cache")),
                   "epochs": 2, "mutual_rounds": 1, "llm": {"train_batch_size": 64, "micro_batch_size": 32}}

    def llmd4rec(folder):
        trainers = []
        original_init = MutualDistillTrainer.__init__

        def remember(self, config, model):
            original_init(self, config, model)
            trainers.append(self)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(MutualDistillTrainer, "__init__", remember)
            run_llmd4rec("LLMD4Rec", "tiny", tiny["config_file_list"],
                         {**config_dict, "checkpoint_dir": str(workdir / folder)})
        return [{k: v for k, v in row.items() if k != "phase_seconds"} for row in trainers[-1].report.rows]

    uninterrupted = llmd4rec("whole")
    original = _kill_after_saving(monkeypatch, 0, file_prefix="round1_llm")
    # The phase's work before its first epoch (teacher store, starting evaluation) is part of its
    # time, also when the phase is resumed: make it take a known minimum.
    original_build = TeacherStore.build
    monkeypatch.setattr(TeacherStore, "build", lambda *a, **k: time.sleep(PRE_FIT_SECONDS) or original_build(*a, **k))
    with pytest.raises(KeyboardInterrupt):
        llmd4rec("killed")
    monkeypatch.setattr(ResumableTrainer, "_save_training_state", original)
    monkeypatch.setattr(TeacherStore, "build", original_build)
    training_states = list((workdir / "killed").rglob("*_training.pth"))
    assert [p.name for p in training_states] == ["round1_llm_training.pth"]
    assert load_checkpoint(training_states[0], RESUME_KEYS)["seconds"] >= PRE_FIT_SECONDS
    assert llmd4rec("killed") == uninterrupted


def test_a_run_killed_after_early_stopping_keeps_its_best_epoch(tiny, workdir, monkeypatch):
    """Validation scores that fall after epoch 0 make early stopping (stopping_step 0) end the
    run at epoch 1; killed right then, the rerun must test epoch 0's weights, not epoch 1's."""
    original_valid = ResumableTrainer._valid_epoch

    def falling_scores(self, valid_data, show_progress=False):
        score, result = original_valid(self, valid_data, show_progress)
        self.validations = getattr(self, "validations", 0) + 1
        return score - self.validations, result

    monkeypatch.setattr(ResumableTrainer, "_valid_epoch", falling_scores)

    def sasrecd(folder):
        config_dict = {**tiny["config_dict"], "checkpoint_dir": str(workdir / folder), "epochs": 5,
                       "stopping_step": 0}
        return run_llmd4rec("SASRecD", "tiny", tiny["config_file_list"], config_dict)

    uninterrupted = sasrecd("whole")
    original = _kill_after_saving(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        sasrecd("killed")
    monkeypatch.setattr(ResumableTrainer, "_save_training_state", original)
    resumed = sasrecd("killed")
    assert resumed["test_result"] == uninterrupted["test_result"]
    assert not list((workdir / "killed").glob("*.resume.pth"))


@pytest.mark.parametrize("killed_stage", ["pretrain", "finetune"])
def test_s3rec_resumes_in_either_stage(tiny, workdir, monkeypatch, killed_stage):
    """Killed after its first pre-training epoch, or after the first fine-tuning epoch, S3Rec's
    rerun trains only what is missing (none of the pre-training in the second case) and ends with
    the uninterrupted run's results."""

    def s3rec(folder):
        config_dict = {**tiny["config_dict"], "checkpoint_dir": str(workdir / folder), "epochs": 2,
                       "pretrain_epochs": 2, "stopping_step": 10}
        return run_llmd4rec("S3Rec", "tiny", tiny["config_file_list"], config_dict)

    uninterrupted = s3rec("whole")
    original = ResumableTrainer._save_training_state

    def save_then_die(self, epoch_idx, train_data):
        original(self, epoch_idx, train_data)
        if epoch_idx == 0 and self.model.train_stage == killed_stage:
            raise KeyboardInterrupt

    monkeypatch.setattr(ResumableTrainer, "_save_training_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        s3rec("killed")
    monkeypatch.setattr(ResumableTrainer, "_save_training_state", original)

    trained = []  # (stage, epoch) of every epoch the rerun trains
    original_epoch = S3RecTrainer._train_epoch
    monkeypatch.setattr(S3RecTrainer, "_train_epoch", lambda self, *a, **k: trained.append(
        (self.model.train_stage, a[1])) or original_epoch(self, *a, **k))
    resumed = s3rec("killed")
    missing = [("pretrain", 1)] if killed_stage == "pretrain" else []
    assert trained == missing + [("finetune", e) for e in range(1 if killed_stage == "finetune" else 0, 2)]
    assert resumed["test_result"] == uninterrupted["test_result"]
    assert resumed["best_valid_result"] == uninterrupted["best_valid_result"]
    assert not list((workdir / "killed").glob("*.resume.pth"))  # both stages' states gone at the end


def test_a_run_knows_its_model_files_by_content_so_a_moved_folder_still_matches(tmp_path):
    """Run folders, resume files and round-state checks hash the settings; a setting that names a
    checkpoint enters by the file's bytes, so the same file at another path (a folder copied to
    another machine) gives the same settings, and another file does not."""
    from types import SimpleNamespace

    from recbole_llmd4rec.trainer import differing_settings, run_fingerprint, run_settings

    here, moved, other = tmp_path / "here.pth", tmp_path / "moved" / "here.pth", tmp_path / "other.pth"
    moved.parent.mkdir()
    here.write_bytes(b"weights")
    moved.write_bytes(b"weights")
    other.write_bytes(b"other weights")

    def config(checkpoint, **more):
        return SimpleNamespace(final_config_dict={"crm_checkpoint": str(checkpoint), "learning_rate": 0.001, **more})

    assert run_fingerprint(config(here)) == run_fingerprint(config(moved))
    assert run_fingerprint(config(here)) != run_fingerprint(config(other))
    # a path that names no file stays a path (the run then fails on it with its own error)
    assert dict(run_settings(config(tmp_path / "gone.pth"))[0])["crm_checkpoint"] == repr(str(tmp_path / "gone.pth"))
    # a key an older version recorded and RUN_IRRELEVANT_KEYS now leaves out is no difference
    older = run_settings(config(here))
    older[0].append(("teacher_memory_gib", "8"))
    assert differing_settings(older, run_settings(config(moved))) == []
    assert differing_settings(older, run_settings(config(other))) == ["crm_checkpoint"]
