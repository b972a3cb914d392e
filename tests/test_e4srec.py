"""E4SRec on the embedded tiny Qwen2 backbone: training, scoring, saving, errors."""

import pytest
import torch
from recbole.utils import init_seed

from conftest import train_steps
from recbole_llmd4rec import Config, run_llmd4rec
from recbole_llmd4rec.errors import LLMD4RecError
from recbole_llmd4rec.model.e4srec import E4SRec
from recbole_llmd4rec.quick_start import load_dataset
from recbole_llmd4rec.trainer import accumulate_over_micro_batches


@pytest.fixture(scope="module")
def llm_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("llm_cache"))


@pytest.fixture
def e4srec_setup(tiny, llm_cache):
    def build(**overrides):
        config = Config("E4SRec", tiny["dataset"], tiny["config_file_list"],
                        {**tiny["config_dict"], "llm_cache_dir": llm_cache, "lora_dropout": 0.0, **overrides})
        _, train_data, _, _ = load_dataset(config)
        init_seed(config["seed"], True)
        return config, train_data._dataset, next(iter(train_data))
    return build


def test_only_adapters_and_projections_train(e4srec_setup):
    config, dataset, _ = e4srec_setup()
    model = E4SRec(config, dataset)
    trainable = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"backbone", "input_projection", "output_projection"}
    assert all("lora_" in name for name, p in model.backbone.named_parameters() if p.requires_grad)
    assert not model.item_embedding.weight.requires_grad


def test_loss_goes_down_and_full_sort_scores_every_item(e4srec_setup):
    config, dataset, batch = e4srec_setup()
    model = E4SRec(config, dataset)
    losses = train_steps(model, batch, steps=8)
    assert losses[-1] < losses[0]
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict(batch)
    assert scores.shape == (len(batch), dataset.item_num) and torch.isfinite(scores).all()


def test_user_state_does_not_depend_on_padding_width(e4srec_setup):
    config, dataset, batch = e4srec_setup()
    model = E4SRec(config, dataset).eval()
    item_seq, item_len = batch["item_id_list"], batch["item_length"]
    wider = torch.cat([item_seq, torch.zeros(len(batch), 5, dtype=item_seq.dtype)], dim=1)
    with torch.no_grad():
        assert torch.allclose(model(item_seq, item_len), model(wider, item_len), atol=1e-5)
        # ... and does depend on the history.
        shifted = torch.where(item_seq > 0, item_seq % (dataset.item_num - 1) + 1, item_seq)
        assert not torch.allclose(model(item_seq, item_len), model(shifted, item_len), atol=1e-5)


def test_micro_batches_give_the_full_batch_gradient(e4srec_setup):
    config, dataset, batch = e4srec_setup()
    model = E4SRec(config, dataset).eval()
    params = [p for p in model.parameters() if p.requires_grad]
    model.calculate_loss(batch).backward()
    full = [p.grad.clone() for p in params]
    model.zero_grad()
    returned = accumulate_over_micro_batches(model.calculate_loss, 7)(batch)
    assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(full, params))
    returned.backward()  # what RecBole then does: no extra gradient
    assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(full, params))


def test_the_gradient_scaler_is_refused_with_micro_batches(tiny, llm_cache):
    # RecBole's scaler would unscale gradients the micro batches never scaled
    with pytest.raises(LLMD4RecError, match="enable_scaler does not work with E4SRec's micro batches"):
        run_llmd4rec(model="E4SRec", dataset="tiny", config_file_list=tiny["config_file_list"],
                     config_dict={**tiny["config_dict"], "llm_cache_dir": llm_cache, "enable_scaler": True})


def test_teacher_term_is_added(e4srec_setup):
    config, dataset, batch = e4srec_setup()
    model = E4SRec(config, dataset).eval()
    teacher = torch.randn(len(batch), dataset.item_num)
    with torch.no_grad():
        assert model.calculate_loss(batch, teacher_logits=teacher) > model.calculate_loss(batch)


def test_llmsrec_term_projects_each_user_state_with_its_own_projection(e4srec_setup, tmp_path):
    """LLM-SRec: g_l takes E4SRec's user state, g_c the CRM's, with the configured weights; both
    projections train; the deployable artefacts leave both out."""
    from recbole_llmd4rec.losses import FeatureTargets, user_distillation_objective

    config, dataset, batch = e4srec_setup(llmsrec_weight=0.5, llmsrec_uniformity_weight=0.25)
    model = E4SRec(config, dataset).eval()
    crm_width = 8  # the CRM's width differs from the LLM's (64): a swapped projection cannot run
    model.add_distiller_parts("llmsrec", crm_width)
    crm_state = torch.randn(len(batch), crm_width)
    loss = model.calculate_loss(batch, teacher=FeatureTargets(crm_state))
    with torch.no_grad():
        user_state = model.forward(batch["item_id_list"], batch["item_length"])
        expected = user_distillation_objective(
            torch.nn.functional.cross_entropy(model.output_projection(user_state), batch["item_id"]),
            model.user_projection(user_state), model.crm_user_projection(crm_state), 0.5, 0.25)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    for projection in (model.user_projection, model.crm_user_projection):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in projection.parameters())
    assert model.user_projection[-1].out_features == model.crm_user_projection[-1].out_features == 128
    saved = model.save_artifacts(tmp_path / "llm")
    from safetensors.torch import load_file

    assert not any("user_projection" in key for key in load_file(saved / "projections.safetensors"))


def test_artifacts_round_trip_gives_identical_scores(e4srec_setup, tmp_path):
    config, dataset, batch = e4srec_setup()
    model = E4SRec(config, dataset)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)  # LoRA B starts at zero: make the adapter matter
    model.eval()
    saved = model.save_artifacts(tmp_path / "llm")
    assert (saved / "adapter" / "adapter_model.safetensors").is_file()
    init_seed(config["seed"] + 1, True)
    fresh = E4SRec(config, dataset).eval()
    with torch.no_grad():
        assert not torch.allclose(fresh.full_sort_predict(batch), model.full_sort_predict(batch))
        fresh.load_artifacts(saved)
        assert torch.equal(fresh.full_sort_predict(batch), model.full_sort_predict(batch))
    # a run killed between save_artifacts' two renames leaves only the earlier version
    model.save_artifacts(saved)
    assert not saved.with_name("llm.previous").exists()  # a finished save leaves nothing else
    saved.rename(saved.with_name("llm.previous"))
    with pytest.raises(LLMD4RecError, match=r"llm is missing: a run stopped while replacing it .*rerun"):
        fresh.load_artifacts(saved)


def test_recbole_checkpoint_leaves_out_the_frozen_backbone(e4srec_setup):
    config, dataset, batch = e4srec_setup()
    model = E4SRec(config, dataset)
    state = model.state_dict()
    assert not any(k.startswith("backbone.") and "lora_" not in k for k in state)
    assert "item_embedding.weight" in state and "output_projection.weight" in state
    other = E4SRec(config, dataset)
    other.load_state_dict(state)
    with pytest.raises(RuntimeError, match="does not fit"):
        other.load_state_dict({"item_embedding.weight": state["item_embedding.weight"]})


def test_item_embeddings_come_from_a_crm_checkpoint(tiny, e4srec_setup):
    crm = run_llmd4rec(model="SASRec", **tiny)
    config, dataset, _ = e4srec_setup(crm_checkpoint=crm["saved_model_file"])
    model = E4SRec(config, dataset)
    expected = torch.load(crm["saved_model_file"])["state_dict"]["item_embedding.weight"]
    assert torch.equal(model.item_embedding.weight, expected)

    config, dataset, _ = e4srec_setup(crm_checkpoint=crm["saved_model_file"], embedding_size=32)
    with pytest.raises(LLMD4RecError, match="item embeddings of size 16"):
        E4SRec(config, dataset)


def test_crm_checkpoint_of_another_data_set_is_refused(tiny, e4srec_setup, tmp_path):
    crm = run_llmd4rec(model="SASRec", **tiny)
    checkpoint = torch.load(crm["saved_model_file"])
    checkpoint["state_dict"]["item_embedding.weight"] = torch.zeros(99, 16)
    torch.save(checkpoint, tmp_path / "other.pth")
    config, dataset, _ = e4srec_setup(crm_checkpoint=str(tmp_path / "other.pth"))
    with pytest.raises(LLMD4RecError, match="98 items, this data set has 40"):
        E4SRec(config, dataset)


def test_llm_path_errors(e4srec_setup, tmp_path):
    config, dataset, _ = e4srec_setup(llm_path=str(tmp_path / "absent"))
    with pytest.raises(LLMD4RecError, match="is not a directory"):
        E4SRec(config, dataset)
    (tmp_path / "empty").mkdir()
    config, dataset, _ = e4srec_setup(llm_path=str(tmp_path / "empty"))
    with pytest.raises(LLMD4RecError, match="no config.json"):
        E4SRec(config, dataset)
    from transformers import BertConfig

    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(
        tmp_path / "bert")
    config, dataset, _ = e4srec_setup(llm_path=str(tmp_path / "bert"))
    with pytest.raises(LLMD4RecError, match="'bert' model, not a decoder"):
        E4SRec(config, dataset)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text('{"model_type": "qwen2",')
    config, dataset, _ = e4srec_setup(llm_path=str(tmp_path / "broken"))
    with pytest.raises(LLMD4RecError, match="cannot read its config.json"):
        E4SRec(config, dataset)
    config, dataset, _ = e4srec_setup(llm_path=str(tmp_path / "empty"), llm_gguf_file="model.gguf")
    with pytest.raises(LLMD4RecError, match="llm_gguf_file model.gguf is not in llm_path"):
        E4SRec(config, dataset)


@pytest.mark.parametrize("overrides, message", [
    ({"lora_r": 0}, "lora_r must be an int >= 1"),
    ({"tiny_llm": {"hidden_size": 7}}, "does not make a Qwen2 model"),
])
def test_settings_that_make_no_backbone_are_refused(e4srec_setup, overrides, message):
    config, dataset, _ = e4srec_setup(**overrides)
    with pytest.raises(LLMD4RecError, match=message):
        E4SRec(config, dataset)


def test_e4srec_runs_through_recbole_trainer(tiny, llm_cache, caplog):
    result = run_llmd4rec(model="E4SRec", dataset="tiny", config_file_list=tiny["config_file_list"],
                          config_dict={**tiny["config_dict"], "llm_cache_dir": llm_cache, "train_batch_size": 32,
                                       "micro_batch_size": 8})
    assert set(result["test_result"]) == {"hit@5", "hit@10", "ndcg@5", "ndcg@10"}
    # trained alone without crm_checkpoint, E4SRec's item embeddings are random: the user is told
    assert any("E4SRec item embeddings are random" in record.getMessage() for record in caplog.records)


def test_llmsrec_settings_at_their_defaults_keep_every_finished_run(tiny):
    """LLM-SRec's keys came after runs and comparison records were kept: at their defaults they
    enter neither a run's fingerprint nor a record's identity; another value counts."""
    from recbole_llmd4rec.experiments.runner import yaml_settings
    from recbole_llmd4rec.trainer.run_state import run_settings

    llmsrec_keys = {"llmsrec_weight", "llmsrec_uniformity_weight", "llmsrec_projection_size"}

    def keys(**overrides):
        config = Config("E4SRec", tiny["dataset"], tiny["config_file_list"], {**tiny["config_dict"], **overrides})
        return {key for key, _ in run_settings(config)[0]}

    assert not llmsrec_keys & keys()
    assert llmsrec_keys <= keys(llmsrec_weight=0.5, llmsrec_uniformity_weight=0.1, llmsrec_projection_size=64)
    e4srec_yaml = dict(yaml_settings([], "tiny"))["properties/model/E4SRec.yaml"]
    assert "llm_path" in e4srec_yaml and not llmsrec_keys & set(e4srec_yaml)
