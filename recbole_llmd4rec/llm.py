"""Loading the language-model backbone of E4SRec: a local Hugging Face decoder LM, or the
embedded tiny Qwen2-architecture default, both through ``from_pretrained``.

Nothing here downloads: ``llm_path`` is a local directory, or ``tiny-qwen2``, which builds a
randomly initialised Qwen2 model and a byte-level tokenizer from the yaml config, writes them
once to a cache directory and loads them from there with the same ``AutoModel`` /
``AutoTokenizer`` calls a real checkpoint goes through. ``trust_remote_code`` is never set.
"""

import hashlib
import json
import os
import shutil
from logging import getLogger
from pathlib import Path

import torch

from recbole_llmd4rec.errors import LLMD4RecError

TINY_LLM_NAME = "tiny-qwen2"
TINY_PAD_TOKEN = "<|endoftext|>"  # Qwen's end-of-text token, used as padding as Qwen does
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(name, device):
    """``auto`` is bfloat16 on a GPU and float32 on a CPU."""
    if name == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    if name not in DTYPES:
        raise LLMD4RecError(f"llm_dtype must be auto, {', '.join(DTYPES)}; got {name!r}")
    return DTYPES[name]


def _byte_level_tokenizer():
    """A byte-level tokenizer (256 byte tokens + end-of-text), built without any download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokenizer = Tokenizer(models.BPE(vocab={symbol: i for i, symbol in enumerate(alphabet)}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=TINY_PAD_TOKEN, eos_token=TINY_PAD_TOKEN)


def build_tiny_llm(tiny_config, cache_dir, seed):
    """Write the embedded tiny Qwen2 model and tokenizer to a cache folder; return the folder.

    The folder name hashes the architecture and seed, so a changed config never reuses an
    old model. It is written to a temporary folder first and renamed, so a killed run never
    leaves a half-written model behind.
    """
    from transformers import Qwen2Config, Qwen2Model

    key = hashlib.sha256(json.dumps({"config": tiny_config, "seed": seed}, sort_keys=True).encode()).hexdigest()[:12]
    target = Path(cache_dir) / f"{TINY_LLM_NAME}-{key}"
    if (target / "config.json").is_file():
        return target
    tokenizer = _byte_level_tokenizer()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Qwen2Model(Qwen2Config(vocab_size=len(tokenizer), tie_word_embeddings=False, **tiny_config))
    temporary = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    model.save_pretrained(temporary)
    tokenizer.save_pretrained(temporary)
    temporary.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(temporary, target)
    except OSError:  # another process finished the same model first
        shutil.rmtree(temporary, ignore_errors=True)
    getLogger().warning(
        f"E4SRec backbone: the embedded {TINY_LLM_NAME} model, RANDOMLY INITIALISED ({tiny_config}); "
        f"set llm_path to a local Hugging Face model directory for a pretrained LLM"
    )
    return target


def check_decoder_directory(path):
    """Refuse a path that is not a local Hugging Face decoder LM, with the reason."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    path = Path(path)
    if not path.is_dir():
        raise LLMD4RecError(
            f"llm_path {path} is not a directory: give a local Hugging Face model folder "
            f"(config.json, weights, tokenizer) or '{TINY_LLM_NAME}'"
        )
    if not (path / "config.json").is_file():
        raise LLMD4RecError(f"llm_path {path} has no config.json: it is not a Hugging Face model folder")
    model_config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    model_type = model_config.model_type
    if (
        getattr(model_config, "is_encoder_decoder", False)
        or model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        or model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    ):
        raise LLMD4RecError(
            f"llm_path {path} holds a '{model_type}' model, not a decoder language model "
            f"(E4SRec needs one such as Qwen2, Llama or SmolLM)"
        )


def load_backbone(llm_path, dtype, cache_dir, tiny_config, seed, gguf_file=None):
    """Return ``(model, tokenizer)``: the base decoder (no LM head) and its tokenizer."""
    from transformers import AutoModel, AutoTokenizer

    if llm_path == TINY_LLM_NAME:
        llm_path = build_tiny_llm(tiny_config, cache_dir, seed)
    elif gguf_file is None:
        check_decoder_directory(llm_path)
    extra = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(llm_path, trust_remote_code=False, **extra)
        model = AutoModel.from_pretrained(llm_path, dtype=dtype, trust_remote_code=False, **extra)
    except (OSError, ValueError) as exc:
        raise LLMD4RecError(f"cannot load the language model from {llm_path}: {str(exc).splitlines()[0]}") from None
    return model, tokenizer
