"""The paper's regime: the CRM loss switch, a phase's teacher rows under shuffling, and the
no-teacher control in a comparison (the embedding update: test_mutual_distill.py)."""

import json

import pytest
import torch
from recbole.data.utils import get_dataloader
from recbole.model.sequential_recommender.sasrec import SASRec
from recbole.utils import init_seed

from conftest import TESTS, TINY_YAML
from recbole_llmd4rec import Config
from recbole_llmd4rec.experiments.runner import compare
from recbole_llmd4rec.distillers import make_distiller
from recbole_llmd4rec.errors import ConfigError
from recbole_llmd4rec.model.llmd4rec import LLMD4Rec
from recbole_llmd4rec.model.sasrecd import SASRecD
from recbole_llmd4rec.quick_start import load_dataset
from recbole_llmd4rec.teacher import INSTANCE_ID, TeacherStore
from recbole_llmd4rec.trainer import PhaseTrainer

BPR = {"crm_loss_type": "BPR"}


def _config(model, tiny, **extra):
    return Config(model, tiny["dataset"], tiny["config_file_list"], {**tiny["config_dict"], **extra})


@pytest.mark.parametrize("model", ["SASRecD", "SASRec", "GRU4Rec"])
def test_crm_loss_type_sets_every_crms_loss_and_negatives(tiny, model):
    config = _config(model, tiny, **BPR)
    assert config["loss_type"] == "BPR"
    assert config["train_neg_sample_args"]["distribution"] == "uniform"
    assert config["train_neg_sample_args"]["sample_num"] == 1
    ce = _config(model, tiny, crm_loss_type="CE")
    assert ce["loss_type"] == "CE" and ce["train_neg_sample_args"]["distribution"] == "none"


def test_e4srec_keeps_cross_entropy_and_llmd4rec_gives_its_crm_the_regime(tiny, tmp_path):
    assert _config("E4SRec", tiny, **BPR)["train_neg_sample_args"]["distribution"] == "none"
    config = _config("LLMD4Rec", tiny, llm_cache_dir=str(tmp_path), **BPR)
    _, train_data, _, _ = load_dataset(config)
    model = LLMD4Rec(config, train_data._dataset)
    assert model.crm_config["loss_type"] == "BPR" and model.crm.loss_type == "BPR"
    assert model.llm_config["train_neg_sample_args"]["distribution"] == "none"


def test_an_unknown_crm_loss_type_is_refused(tiny):
    with pytest.raises(ConfigError, match="crm_loss_type must be one of CE, BPR or None"):
        _config("SASRec", tiny, crm_loss_type="hinge")


def test_bpr_sasrecd_is_recbole_sasrec_and_its_distillation_path_reads_the_same_bpr_loss(tiny):
    config = _config("SASRecD", tiny, length_groups=0, **BPR)
    _, train_data, _, _ = load_dataset(config)
    batch = next(iter(train_data))
    assert "neg_item_id" in batch
    init_seed(config["seed"], True)
    sasrec = SASRec(config, train_data._dataset)
    sasrecd = SASRecD(config, train_data._dataset)
    sasrecd.load_state_dict(sasrec.state_dict())
    sasrec.eval(), sasrecd.eval()  # no dropout: the two paths see the same network
    expected = sasrec.calculate_loss(batch)
    assert torch.equal(sasrecd.calculate_loss(batch), expected)
    # with a teacher, L_rec is the same BPR term (read from the scores of every item) and the KL is added
    sasrecd.distill_beta = 0.0
    teacher_logits = torch.randn(len(batch), sasrecd.n_items)
    assert torch.allclose(sasrecd.calculate_loss(batch, teacher_logits=teacher_logits), expected, atol=1e-6)


def test_each_shuffled_instance_reads_its_own_teacher_row_at_the_students_temperature(tiny, tmp_path):
    """The teacher's rows are looked up by instance id: a lookup shifted by one instance, or a store
    built at another temperature, gives other losses."""
    config = _config("SASRecD", tiny, train_batch_size=16)
    _, train_data, _, _ = load_dataset(config)
    dataset = train_data._dataset
    student = SASRecD(config, dataset).eval()  # eval: the loss is a function of the batch alone
    assert student.distill_temperature != 1.0
    teacher = SASRecD(config, dataset)
    with torch.no_grad():  # a sharp teacher whose rows differ from instance to instance
        teacher.item_embedding.weight.mul_(20)
    teacher.eval()
    store = TeacherStore.build(teacher, dataset, tmp_path / "teacher", 64, "cpu",
                               make_distiller("llmd4rec", student, config))
    phase = PhaseTrainer(config, student, teacher=store)
    loader = get_dataloader(config, "train")(config, dataset, None, shuffle=True)
    seen = []
    for batch in loader:
        ids = batch[INSTANCE_ID]
        seen.append(ids)
        with torch.no_grad():
            expected = student.calculate_loss(batch, teacher_logits=teacher.item_logits(batch))
            assert phase._student_loss(batch).item() == pytest.approx(expected.item(), rel=1e-3)
    seen = torch.cat(seen)
    assert not torch.equal(seen, torch.sort(seen).values)  # the batches really were shuffled
    assert torch.equal(torch.sort(seen).values, torch.arange(len(dataset)))
    store.close()


@pytest.fixture(scope="module")
def bpr_comparison(tmp_path_factory):
    """SASRec, E4SRec, the no-teacher control and KD LLM->CRM on the tiny data set, paper regime."""
    out = tmp_path_factory.mktemp("compare-bpr")
    overrides = [f"--data_path={TESTS / 'data'}", f"--llm_cache_dir={out / 'llm_cache'}", "--epochs=2",
                 "--crm_loss_type=bpr", "--state=INFO"]
    markdown = compare("tiny", [str(TINY_YAML)], overrides, seeds=1,
                       methods="SASRec,E4SRec,SASRec_continued,SASRec_continued_1,KD_LLM_to_CRM", out_dir=out)
    return out, markdown


def test_a_bpr_comparison_says_its_regime_and_judges_llm_to_crm_rows_against_the_control(bpr_comparison):
    out, markdown = bpr_comparison
    assert markdown.startswith("Data set tiny; CRM loss: BPR on one uniformly sampled negative (the paper's regime)")
    for row in ("SASRec", "E4SRec", "SASRec_continued", "SASRec_continued_1", "KD LLM->CRM"):
        assert f"| {row} | 1 |" in markdown
    assert "% vs SASRec_continued_1" in markdown
    assert "- KD LLM->CRM vs SASRec_continued_1: fewer than 2 seeds" in markdown
    for record_file in out.glob("*/seed2020.json"):
        assert json.loads(record_file.read_text())["crm_loss_type"] == "BPR", record_file


def test_the_control_trains_its_crm_phases_without_a_teacher_and_records_every_phase(bpr_comparison):
    out, _ = bpr_comparison
    control = json.loads((out / "SASRec_continued" / "seed2020.json").read_text())
    assert [phase["phase"] for phase in control["phases"]] == ["round1_crm", "round2_crm"]  # SASRec given, E4SRec too
    for phase in control["phases"]:
        assert phase["start_is_candidate"] is False and len(phase["valid_curve"]) == 2
        assert phase["chosen_epoch"] in (0, 1)
    log = (out / "SASRec_continued" / "seed2020" / "run.log").read_text()
    assert "LLMD4Rec phase round1_crm: SASRecD, teacher none" in log and "teacher store" not in log
    kd = json.loads((out / "KD_LLM_to_CRM" / "seed2020.json").read_text())
    assert kd["phases"][-1]["phase"] == "round1_crm"
    # one phase of the control is its first round, read from its run, not trained again
    first = json.loads((out / "SASRec_continued_1" / "seed2020.json").read_text())
    assert first["first_round_of"] == "SASRec_continued"
    round1 = next(r for r in control["rounds"] if (r["round"], r["model"], r["split"]) == (1, "CRM", "test"))
    assert first["rows"]["SASRec_continued_1"]["ndcg@10"] == round1["ndcg@10"]
    sasrec = json.loads((out / "SASRec" / "seed2020.json").read_text())
    assert [phase["phase"] for phase in sasrec["phases"]] == ["train"] and len(sasrec["phases"][0]["valid_curve"]) == 2
