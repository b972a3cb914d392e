"""LLMD4Rec end to end on the tiny data set: Algorithm 1, switches, exports, resume, refusals."""

import json
import math
import subprocess
import sys

import pytest
import torch

from conftest import REPO
from recbole_llmd4rec import run_llmd4rec
from recbole_llmd4rec.errors import ConfigError, LLMD4RecError
from recbole_llmd4rec.model.e4srec import E4SRec
from recbole_llmd4rec.model.sasrecd import SASRecD
from recbole_llmd4rec.trainer import MutualDistillTrainer

TIMING = ("phase_seconds",)


@pytest.fixture(scope="module")
def llm_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("llm_cache"))


@pytest.fixture
def run(tiny, llm_cache, workdir):
    """Run LLMD4Rec on the tiny data set; returns (result, trainer) for inspection."""
    trainers = []
    original_init = MutualDistillTrainer.__init__

    def remember(self, config, model):
        original_init(self, config, model)
        trainers.append(self)

    def go(checkpoint_dir="saved", **overrides):
        config_dict = {
            **tiny["config_dict"], "checkpoint_dir": str(workdir / checkpoint_dir), "llm_cache_dir": llm_cache,
            "epochs": 1, "llm": {"train_batch_size": 64, "micro_batch_size": 32}, **overrides,
        }
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(MutualDistillTrainer, "__init__", remember)
            result = run_llmd4rec("LLMD4Rec", "tiny", tiny["config_file_list"], config_dict)
        return result, trainers[-1]

    return go


def _table(trainer):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in trainer.report.rows]


def test_two_rounds_give_the_full_table_and_exports(run, caplog):
    result, trainer = run()
    # the LLM gets the CRM's item embeddings before round 1: no warning that they are random
    assert not any("embeddings are random" in record.getMessage() for record in caplog.records)
    keys = [(row["round"], row["model"], row["split"]) for row in trainer.report.rows]
    assert keys == [(0, "CRM", "valid"), (0, "CRM", "test"),
                    (1, "LLM", "valid"), (1, "LLM", "test"), (1, "CRM", "valid"), (1, "CRM", "test"),
                    (2, "LLM", "valid"), (2, "LLM", "test"), (2, "CRM", "valid"), (2, "CRM", "test")]
    final = trainer.report.result(2, "CRM", "test")
    assert {k: round(float(v), 4) for k, v in result["test_result"].items()} == pytest.approx(final)
    for name in ("rounds.csv", "rounds.json", "rounds.png", "sasrec_distilled.pth", "item_embeddings.itememb",
                 "e4srec/adapter/adapter_model.safetensors", "e4srec/projections.safetensors"):
        assert (trainer.run_dir / name).exists(), name
    # One teacher pass per distillation phase, never one per epoch.
    instances = len(trainer.train_dataset)
    batches = math.ceil(instances / trainer.config["teacher_batch_size"])
    assert trainer.teacher_passes == {"round1_llm": batches, "round1_crm": batches,
                                      "round2_llm": batches, "round2_crm": batches}


def test_exported_sasrec_loads_in_stock_recbole_and_reproduces_the_test_result(run):
    result, trainer = run()
    script = f"""
import sys, json
import recbole_llmd4rec.compat  # numpy 2 / torch >= 2.6 shims only
from recbole.quick_start import load_data_and_model
from recbole.trainer import Trainer
config, model, dataset, train_data, valid_data, test_data = load_data_and_model({result['saved_model_file']!r})
assert type(model).__module__ == 'recbole.model.sequential_recommender.sasrec', type(model)
assert not any(name.startswith('recbole_llmd4rec.model') for name in sys.modules), 'plugin models imported'
print(json.dumps({{k: float(v) for k, v in Trainer(config, model).evaluate(test_data, load_best_model=False).items()}}))
"""
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                               cwd=trainer.run_dir, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert completed.returncode == 0, completed.stderr[-2000:]
    import json

    reloaded = json.loads(completed.stdout.strip().splitlines()[-1])
    assert reloaded == pytest.approx(trainer.report.result(2, "CRM", "test"), abs=1e-4)


def test_same_seed_twice_gives_the_same_table(run):
    _, first = run("first")
    _, second = run("second")
    assert _table(first) == _table(second)


def test_kill_and_resume_reaches_the_uninterrupted_table(run, monkeypatch):
    _, uninterrupted = run("whole")

    original = MutualDistillTrainer._crm_phase

    def killed_in_round_two(self, t):
        if t == 2:
            raise KeyboardInterrupt
        return original(self, t)

    monkeypatch.setattr(MutualDistillTrainer, "_crm_phase", killed_in_round_two)
    with pytest.raises(KeyboardInterrupt):
        run("killed")
    monkeypatch.setattr(MutualDistillTrainer, "_crm_phase", original)
    _, resumed = run("killed")
    assert resumed.finished_steps == ["round0_crm", "round1_llm", "round1_crm", "round2_llm", "round2_crm"]
    assert _table(resumed) == _table(uninterrupted)


def test_a_kill_after_a_phase_trained_but_before_its_step_was_saved_trains_nothing_again(run, monkeypatch):
    from recbole_llmd4rec.trainer import PhaseTrainer

    _, uninterrupted = run("whole")
    original = MutualDistillTrainer._evaluate_round

    def killed_after_round_two_crm_phase(self, t, model_name, *args):
        if (t, model_name) == (2, "CRM"):
            raise KeyboardInterrupt
        return original(self, t, model_name, *args)

    monkeypatch.setattr(MutualDistillTrainer, "_evaluate_round", killed_after_round_two_crm_phase)
    with pytest.raises(KeyboardInterrupt):
        run("killed")
    monkeypatch.setattr(MutualDistillTrainer, "_evaluate_round", original)
    epochs_trained = []
    original_epoch = PhaseTrainer._train_epoch
    monkeypatch.setattr(PhaseTrainer, "_train_epoch",
                        lambda self, *args, **kwargs: epochs_trained.append(1) or original_epoch(self, *args, **kwargs))
    _, resumed = run("killed")
    assert epochs_trained == []  # round 2's CRM phase had finished: its kept state says so
    assert resumed.teacher_passes == {}  # nor was its teacher's store built again
    assert _table(resumed) == _table(uninterrupted)
    assert not list(resumed.run_dir.glob("round*_*.pth"))  # a finished step's phase files are removed


def test_llm_to_crm_trains_the_llm_once(run):
    _, trainer = run(directions="llm_to_crm")
    epochs = {(row["round"], row["model"]): row["epochs"] for row in trainer.report.rows}
    assert epochs[(1, "LLM")] > 0 and epochs[(2, "LLM")] == 0
    assert trainer.report.result(1, "LLM", "test") == trainer.report.result(2, "LLM", "test")
    assert "round1_llm" not in trainer.teacher_passes  # its one training had no teacher


def test_crm_to_llm_leaves_the_pretrained_crm(run):
    _, trainer = run(directions="crm_to_llm")
    assert trainer.report.result(2, "CRM", "test") == trainer.report.result(0, "CRM", "test")
    assert set(trainer.teacher_passes) == {"round1_llm", "round2_llm"}


def test_embedding_update_switch(run, monkeypatch):
    at_llm_phase_start = []  # whether the LLM's item table equals the CRM's when each LLM phase begins
    original = MutualDistillTrainer._train_phase

    def spy(self, name, student, *args, **kwargs):
        if student is self.llm:
            at_llm_phase_start.append(torch.equal(self.llm.item_embedding.weight, self.crm.item_embedding.weight))
        return original(self, name, student, *args, **kwargs)

    monkeypatch.setattr(MutualDistillTrainer, "_train_phase", spy)
    _, updated = run("updated")
    assert at_llm_phase_start == [True, True]
    at_llm_phase_start.clear()
    _, frozen = run("frozen", embedding_update=False)
    assert at_llm_phase_start == [True, False]  # round 2 keeps round 0's table; the CRM moved on
    # With the update, E4SRec ends with the E the CRM had after round 1; without, with round 0's.
    assert not torch.equal(updated.llm.item_embedding.weight, frozen.llm.item_embedding.weight)
    assert not torch.equal(frozen.llm.item_embedding.weight, frozen.crm.item_embedding.weight)


def test_sample_weight_off_reaches_both_models(run, monkeypatch):
    weights = []
    import recbole_llmd4rec.model.sasrecd as sasrecd

    original = sasrecd.distillation_terms

    def spy(*args):
        kl, weight = original(*args)
        weights.append(weight)
        return kl, weight

    monkeypatch.setattr(sasrecd, "distillation_terms", spy)
    import recbole_llmd4rec.model.e4srec as e4srec

    monkeypatch.setattr(e4srec, "distillation_terms", spy)
    _, trainer = run(sample_weight=False, mutual_rounds=1)
    assert weights and all(torch.equal(w, torch.ones_like(w)) for w in weights)
    assert not trainer.crm.sample_weight and not trainer.llm.sample_weight


@pytest.mark.parametrize(
    "overrides, error, message",
    [({"mutual_rounds": 0}, ConfigError, "mutual_rounds must be an int >= 1"),
     ({"directions": "sideways"}, ConfigError, "directions must be one of"),
     ({"crm": {"distill_temperature": -1.0}}, ConfigError,
      r"SASRecD's distill_temperature \(T2, the LLM -> CRM temperature\) must be > 0, got -1.0; set it in the crm: "),
     ({"llm": {"distill_temperature": 0}}, ConfigError,
      r"E4SRec's distill_temperature \(T1, the CRM -> LLM temperature\) must be > 0, got 0; set it in the llm: "),
     ({"distill_gamma": -0.5}, ConfigError, r"E4SRec's distill_gamma \(gamma, .*\) must be >= 0, got -0.5; .* llm: "),
     ({"distill_beta": -0.5}, ConfigError, r"SASRecD's distill_beta \(beta, .*\) must be >= 0, got -0.5; .* crm: "),
     ({"teacher_memory_gib": -1}, ConfigError, "teacher_memory_gib must be a number >= 0"),
     ({"teacher_batch_size": 0}, ConfigError, "teacher_batch_size must be an int >= 1"),
     ({"epochs": -1}, ConfigError, "epochs must be an int >= 1"),
     ({"llm": {"epochs": 0}}, ConfigError, "epochs must be an int >= 1"),
     ({"enable_scaler": True}, ConfigError, "enable_scaler does not work with E4SRec's micro batches"),
     ({"distiller": "llmsrec"}, ConfigError, "distiller llmsrec distils the CRM into the LLM only: set directions: crm_to_llm"),
     ({"distiller": "llmsrec", "directions": "crm_to_llm", "llmsrec_weight": -1}, ConfigError,
      "llmsrec_weight must be a number >= 0, got -1"),
     ({"distiller": "llmsrec", "directions": "crm_to_llm", "llm": {"llmsrec_projection_size": 0}}, ConfigError,
      "llmsrec_projection_size must be an int >= 1, got 0")],
)
def test_nonsense_settings_are_refused_before_training(run, workdir, overrides, error, message):
    with pytest.raises(error, match=message):
        run(**overrides)
    assert not list(workdir.glob("saved/LLMD4Rec-*/state.pth"))


def test_teacher_checkpoint_of_another_data_set_is_refused(run, tiny, workdir, tmp_path):
    crm = run_llmd4rec("SASRec", **tiny)
    checkpoint = torch.load(crm["saved_model_file"])
    checkpoint["state_dict"]["item_embedding.weight"] = torch.zeros(77, 16)
    torch.save(checkpoint, tmp_path / "other.pth")
    with pytest.raises(LLMD4RecError, match=r"does not fit .*: size mismatch for item_embedding\.weight"):
        run(crm_checkpoint=str(tmp_path / "other.pth"))


def test_a_nan_loss_stops_the_phase_and_keeps_the_last_checkpoint(run, workdir, monkeypatch):
    from recbole_llmd4rec.quick_start import load_checkpoint
    from recbole_llmd4rec.trainer import RUN_STATE_KEYS

    original = SASRecD.calculate_loss

    def nan_with_teacher(self, interaction, teacher=None):
        loss = original(self, interaction, teacher=teacher)
        return loss * float("nan") if teacher is not None else loss

    monkeypatch.setattr(SASRecD, "calculate_loss", nan_with_teacher)
    with pytest.raises(LLMD4RecError, match="round1_crm stopped: the training loss became NaN"):
        run()
    (state_file,) = workdir.glob("saved/LLMD4Rec-*/state.pth")
    assert load_checkpoint(state_file, RUN_STATE_KEYS)["finished_steps"] == ["round0_crm", "round1_llm"]


def test_another_value_error_in_a_phase_is_not_taken_for_a_nan_loss(run, monkeypatch):
    def broken_loss(self, interaction, teacher=None):
        raise ValueError("a timestamp in nanoseconds")  # says "nan" and is no NaN loss

    monkeypatch.setattr(SASRecD, "calculate_loss", broken_loss)
    with pytest.raises(ValueError, match="a timestamp in nanoseconds"):
        run()


@pytest.fixture
def hurting_teacher(monkeypatch):
    """Every distillation step makes the CRM worse (gradient ascent on its loss)."""
    original = SASRecD.calculate_loss

    def ascent_with_teacher(self, interaction, teacher=None):
        loss = original(self, interaction, teacher=teacher)
        return -loss if teacher is not None else loss

    monkeypatch.setattr(SASRecD, "calculate_loss", ascent_with_teacher)


def test_a_phase_keeps_its_best_trained_epoch_and_records_its_curve(run, hurting_teacher):
    _, trainer = run(mutual_rounds=1, epochs=2, crm={"learning_rate": 0.05})
    # the paper's rule: the phase trains to convergence, so it ends on a trained epoch, here worse than its start
    assert trainer.report.result(1, "CRM", "valid") != trainer.report.result(0, "CRM", "valid")
    phases = {phase["phase"]: phase for phase in json.loads((trainer.run_dir / "phases.json").read_text())}
    assert list(phases) == ["round0_crm", "round1_llm", "round1_crm"]
    crm = phases["round1_crm"]
    assert crm["start_is_candidate"] is False and [epoch for epoch, _ in crm["valid_curve"]] == [0, 1]
    scores = dict(crm["valid_curve"])
    assert crm["chosen_epoch"] == max(scores, key=scores.get)  # the best trained epoch, first of equals
    assert max(scores.values()) < crm["start_valid_score"]
    assert trainer.report.result(1, "CRM", "valid")["ndcg@10"] == pytest.approx(max(scores.values()), abs=1e-4)
    assert crm["start_valid_score"] == pytest.approx(trainer.report.result(0, "CRM", "valid")["ndcg@10"], abs=1e-4)


def test_with_the_start_as_a_candidate_a_phase_that_only_hurts_keeps_its_starting_weights(run, hurting_teacher):
    _, trainer = run(mutual_rounds=1, crm={"learning_rate": 0.05}, phase_start_is_candidate=True)
    assert trainer.report.result(1, "CRM", "valid") == trainer.report.result(0, "CRM", "valid")
    assert trainer.report.result(1, "CRM", "test") == trainer.report.result(0, "CRM", "test")
    assert trainer.phases[-1]["chosen_epoch"] == "start"


def test_a_broken_run_state_is_one_clear_error(run, workdir):
    _, trainer = run(mutual_rounds=1)
    trainer.state_file.write_bytes(b"truncated")
    with pytest.raises(LLMD4RecError, match=r"cannot read checkpoint .*state\.pth"):
        run(mutual_rounds=1)
    assert (trainer.run_dir / "rounds.csv").is_file()  # finished outputs are left alone


@pytest.mark.parametrize("distiller, teacher_type", [("dllm2rec", "RankingTargets"), ("leader", "FeatureTargets")])
def test_baseline_distillers_train_the_crm_from_the_llm(run, monkeypatch, distiller, teacher_type):
    seen = []
    original = SASRecD.calculate_loss

    def spy(self, interaction, teacher=None):
        seen.append(type(teacher).__name__)
        return original(self, interaction, teacher=teacher)

    monkeypatch.setattr(SASRecD, "calculate_loss", spy)
    _, trainer = run(distiller=distiller, directions="llm_to_crm", mutual_rounds=1, crm={"learning_rate": 0.01})
    assert teacher_type in seen and set(seen) <= {teacher_type, "NoneType"}
    assert trainer.report.result(1, "CRM", "test")  # the round was evaluated
    if distiller == "dllm2rec":
        # Its embedding distillation reads the trained LLM's item vectors into SASRec's inputs ...
        assert torch.equal(trainer.crm.item_embedding.teacher_embedding, trainer.llm.item_representations())
        assert not (trainer.run_dir / "sasrec_distilled.pth").exists()  # ... so no plain SASRec exists
    else:
        # LEADER's projection is a training aid only: the export is a plain SASRec state dict.
        exported = torch.load(trainer.run_dir / "sasrec_distilled.pth", weights_only=False)["state_dict"]
        assert not any(key.startswith("feature_projection") for key in exported)
        assert trainer.crm.feature_projection.out_features == trainer.llm.width


def test_a_one_way_baseline_distiller_refuses_both_directions(run):
    with pytest.raises(ConfigError, match="distiller dllm2rec distils the LLM into the CRM only"):
        run(distiller="dllm2rec")


LLMSREC = {"distiller": "llmsrec", "directions": "crm_to_llm", "mutual_rounds": 1}


def test_llmsrec_distils_each_instances_own_crm_user_state_and_leaves_the_crm_as_it_was(run, monkeypatch):
    """LLM-SRec's LLM phase reads, for every instance of its shuffled batches, the frozen CRM's
    user state of that very instance from the teacher store; the CRM does not change while its
    projection g_c (a part of E4SRec) trains."""
    seen = []  # (instance ids, history, length, the teacher rows looked up for them)
    original_loss = E4SRec.calculate_loss

    def spy(self, interaction, teacher_logits=None, teacher=None):
        if teacher is not None:
            seen.append((interaction["instance_id"], interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], teacher))
        return original_loss(self, interaction, teacher_logits, teacher)

    around_phase = {}
    original_phase = MutualDistillTrainer._train_phase

    def phase(self, name, student, *args, **kwargs):
        def snapshot():
            return ({key: value.clone() for key, value in self.crm.state_dict().items()},
                    [p.detach().clone() for p in self.llm.crm_user_projection.parameters()])
        around_phase[name] = [snapshot()]
        result = original_phase(self, name, student, *args, **kwargs)
        around_phase[name].append(snapshot())
        return result

    monkeypatch.setattr(E4SRec, "calculate_loss", spy)
    monkeypatch.setattr(MutualDistillTrainer, "_train_phase", phase)
    _, trainer = run(**LLMSREC)
    assert {type(teacher).__name__ for *_, teacher in seen} == {"FeatureTargets"}
    ids = torch.cat([instance_ids for instance_ids, *_ in seen])
    assert not torch.equal(ids, ids.sort().values)  # the batches were shuffled
    crm = trainer.crm.eval()
    with torch.no_grad():
        for _, item_seq, item_seq_len, teacher in seen:
            torch.testing.assert_close(teacher.user_state, crm.forward(item_seq, item_seq_len), rtol=2e-3, atol=2e-3)
    (crm_before, projection_before), (crm_after, projection_after) = around_phase["round1_llm"]
    assert crm_before.keys() == crm_after.keys()
    assert all(torch.equal(crm_before[key], crm_after[key]) for key in crm_before)
    assert not all(torch.equal(a, b) for a, b in zip(projection_before, projection_after))  # g_c trained
    assert trainer.report.result(1, "CRM", "test") == trainer.report.result(0, "CRM", "test")
    assert set(trainer.teacher_passes) == {"round1_llm"}


def test_llmsrec_at_weight_0_is_e4srec_alone_without_a_teacher_store(run, monkeypatch):
    teachers = []
    original_loss = E4SRec.calculate_loss

    def spy(self, interaction, teacher_logits=None, teacher=None):
        teachers.append(teacher)
        return original_loss(self, interaction, teacher_logits, teacher)

    monkeypatch.setattr(E4SRec, "calculate_loss", spy)
    _, trainer = run(**LLMSREC, llmsrec_weight=0.0)
    assert teachers and set(teachers) == {None} and trainer.teacher_passes == {}


def test_an_llm_checkpoint_that_is_not_an_e4srec_is_refused(run, tiny):
    crm = run_llmd4rec("SASRec", **tiny)
    with pytest.raises(LLMD4RecError, match=r"llm_checkpoint .* does not fit this data set's E4SRec .*: E4SRec state dict does not fit: missing \["):
        run(llm_checkpoint=crm["saved_model_file"], directions="llm_to_crm")


def test_a_teacher_from_llm_checkpoint_is_used_as_is(run, tiny, llm_cache):
    base = run_llmd4rec("SASRec", **tiny)
    other = run_llmd4rec("SASRec", tiny["dataset"], tiny["config_file_list"], {**tiny["config_dict"], "seed": 7})
    teacher = run_llmd4rec("E4SRec", tiny["dataset"], tiny["config_file_list"],
                           {**tiny["config_dict"], "crm_checkpoint": base["saved_model_file"], "llm_cache_dir": llm_cache})
    trained = torch.load(teacher["saved_model_file"], weights_only=False)["state_dict"]
    # Another SASRec as the student: E4SRec keeps the E it was trained with, in every round.
    _, trainer = run(directions="llm_to_crm", crm_checkpoint=other["saved_model_file"],
                     llm_checkpoint=teacher["saved_model_file"])
    assert torch.equal(trainer.llm.item_embedding.weight, trained["item_embedding.weight"])
    assert not torch.equal(trainer.llm.item_embedding.weight, trainer.crm.item_embedding.weight)
    assert "round1_llm" not in trainer.teacher_passes and trainer.report.result(1, "LLM", "test")


def test_a_run_that_differs_only_in_later_rounds_starts_from_a_kept_round_state(run):
    _, full = run("full")
    _, frozen = run("frozen", embedding_update=False)
    kept = full.run_dir / "state_round1.pth"
    _, started = run("started", embedding_update=False, start_state=str(kept))
    # Rounds 0 and 1 are taken over, round 2 is trained: the table of the run from scratch.
    assert _table(started) == _table(frozen)
    assert [row["phase_seconds"] for row in started.report.rows[:6]] == [
        row["phase_seconds"] for row in full.report.rows[:6]]
    assert started.teacher_passes.keys() == {"round2_llm", "round2_crm"}
    # More rounds on top of a finished one-round run.
    _, one_round = run("one", mutual_rounds=1)
    _, extended = run("extended", start_state=str(one_round.run_dir / "state_round1.pth"))
    assert _table(extended) == _table(full)
    # A setting that shaped rounds 0-1 differs: refused before anything trains.
    with pytest.raises(LLMD4RecError, match=r"start_state .*state_round1\.pth .*rounds 0-1 .*learning_rate"):
        run("other", start_state=str(kept), crm={"learning_rate": 0.01})
    # A round this run does not reach.
    with pytest.raises(LLMD4RecError, match=r"holds round 2, beyond this run's mutual_rounds \(1\)"):
        run("short", mutual_rounds=1, start_state=str(full.run_dir / "state_round2.pth"))
