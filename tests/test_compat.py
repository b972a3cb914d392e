"""The recbole 1.2.1 shims: numpy aliases, allow-list checkpoint loading, anomaly mode, warnings."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import recbole_llmd4rec  # noqa: F401  (applies the shims)
from recbole_llmd4rec.atomic import load_checkpoint
from recbole_llmd4rec.compat import CheckpointUnpickler, RefusedCheckpointContent, cache_keyword
from recbole_llmd4rec.errors import LLMD4RecError
from conftest import REPO


class _RunsShell:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


class _BuildsModel:
    def __reduce__(self):
        from recbole.model.sequential_recommender.sasrec import SASRec

        return (SASRec, (None, None))


def _saved(obj, protocol):
    buffer = io.BytesIO()
    torch.save(obj, buffer, pickle_protocol=protocol)
    buffer.seek(0)
    return buffer


def test_numpy_aliases_recbole_needs():
    assert np.float_ is np.float64 and np.bool8 is np.bool_ and np.unicode_ is np.str_


def test_recbole_import_leaves_anomaly_detection_off():
    import recbole.model.sequential_recommender  # noqa: F401

    assert not torch.is_anomaly_enabled()


@pytest.mark.parametrize("protocol", [2, 4])
def test_default_load_reads_tensors_and_recbole_config_types(protocol):
    from recbole.utils import ModelType

    state = {"weight": torch.arange(6.0).reshape(2, 3), "type": ModelType.SEQUENTIAL, "score": np.float64(0.5)}
    loaded = torch.load(_saved(state, protocol))
    assert torch.equal(loaded["weight"], state["weight"])
    assert loaded["type"] is ModelType.SEQUENTIAL and loaded["score"] == 0.5


@pytest.mark.parametrize("payload", [_RunsShell(), _BuildsModel()])
def test_default_load_refuses_code_outside_the_allow_list(payload):
    with pytest.raises(RefusedCheckpointContent, match="not among the classes a checkpoint may hold|not allowed"):
        torch.load(_saved({"x": payload}, 4))


def test_a_refused_checkpoint_is_one_line_saying_what_was_refused_and_why(tmp_path):
    path = tmp_path / "model.pth"
    torch.save({"config": _RunsShell(), "state_dict": {}}, path)
    with pytest.raises(LLMD4RecError) as refused:
        load_checkpoint(path)
    message = str(refused.value)
    assert message.startswith(f"checkpoint {path} was refused: it holds posix.system") or "nt.system" in message
    assert "could run code when loaded" in message and "weights_only" not in message and "\n" not in message


def test_explicit_weights_only_is_left_to_torch():
    with pytest.raises(Exception):
        torch.load(_saved({"x": _RunsShell()}, 2), weights_only=True)


def test_checkpoint_unpickler_names_model_classes_without_building_them():
    import pickle

    from recbole.model.sequential_recommender.sasrec import SASRec

    data = pickle.dumps({"model_class": SASRec}, protocol=4)
    assert CheckpointUnpickler(io.BytesIO(data)).load()["model_class"] is SASRec


def test_foreign_deprecation_warnings_stay_out_of_the_log():
    # A fresh interpreter: this one has already shown (and so would not repeat) each warning.
    code = "\n".join([
        "import recbole_llmd4rec",
        "import torch.cuda.amp as amp",
        "from peft import LoraConfig, get_peft_model",
        "from transformers import Qwen2Config, Qwen2ForCausalLM",
        "amp.GradScaler(enabled=False)",  # what recbole 1.2.1's Trainer does every epoch
        "lm = Qwen2ForCausalLM(Qwen2Config(vocab_size=32, hidden_size=16, intermediate_size=32,",
        "    num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))",
        "get_peft_model(lm, LoraConfig(r=2, target_modules=['q_proj']))",
        "import numpy as np, pandas as pd",
        "frame = pd.DataFrame({'a': [1.0, np.nan]})",
        "frame['a'].fillna(value=0.0, inplace=True)",  # as recbole 1.2.1's Dataset does
        "assert frame['a'].tolist() == [1.0, 0.0]",  # still filled under pandas < 3
        "assert pd.Series([[1, 2], [3]]).agg(len).tolist() == [2, 1]",  # as recbole's _remap does
        "import torch; from recbole.data.interaction import Interaction",
        "ordered = Interaction({'item': torch.tensor([2, 1])}); ordered.sort('item')",  # np.argsort on a tensor
        "assert ordered['item'].tolist() == [1, 2]",
        "import warnings; warnings.warn('a warning of our own still shows', FutureWarning)",
    ])
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # -W: show library deprecations, which Python hides by default (pytest shows them)
    completed = subprocess.run([sys.executable, "-W", "default::DeprecationWarning", "-c", code], env=env,
                               capture_output=True, text=True,
                               timeout=300, check=True)
    assert "a warning of our own still shows" in completed.stderr
    assert "deprecated" not in completed.stderr and "chained assignment" not in completed.stderr
    assert completed.stderr.count("Warning:") == 1  # ours, and nothing else


def test_cache_keyword_follows_the_models_signature():
    class Before524:  # transformers < 5.24
        def forward(self, inputs_embeds=None, past_key_values=None, use_cache=None):
            pass

    class From524:
        def forward(self, inputs_embeds=None, cache=None, use_cache=None, **kwargs):
            pass

    assert cache_keyword(Before524()) == "past_key_values" and cache_keyword(From524()) == "cache"
