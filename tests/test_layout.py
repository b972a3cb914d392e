"""The layout's boundaries (README, Layout), read from the source's import statements.

Data flows one way: config -> data set -> models -> trainer -> results. The run layer
(``quick_start``, ``experiments``, ``compare``) may import the models and the trainers, never the
other way round; the models do not know the trainers; the loss functions are pure; only the
entry points (``run_llmd4rec.py``, ``convert_dataset.py``) parse arguments.
"""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "recbole_llmd4rec"
RUN_LAYER = ("recbole_llmd4rec.quick_start", "recbole_llmd4rec.experiments", "recbole_llmd4rec.compare")
TRAINERS = ("recbole_llmd4rec.trainer",)


def module_name(path, root=REPO):
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path, root=REPO):
    """Every module an import statement of ``path`` names, at any depth (a function's local
    import counts too), relative imports resolved against the package."""
    package = module_name(path, root) if path.name == "__init__.py" else module_name(path, root).rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            # ``from package import module`` names the module too
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def within(name, prefixes):
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def library_modules(folder=PACKAGE):
    return sorted(folder.rglob("*.py"))


def ids(paths):
    return [str(path.relative_to(REPO)) for path in paths]


MODELS = library_modules(PACKAGE / "model")
TRAINER_MODULES = library_modules(PACKAGE / "trainer")


@pytest.mark.parametrize("path", MODELS, ids=ids(MODELS))
def test_a_model_imports_neither_the_run_layer_nor_a_trainer(path):
    crossing = sorted(name for name in imported_modules(path) if within(name, RUN_LAYER + TRAINERS))
    assert not crossing, f"{path.name} imports {crossing}"


@pytest.mark.parametrize("path", TRAINER_MODULES, ids=ids(TRAINER_MODULES))
def test_a_trainer_module_does_not_import_the_run_layer(path):
    crossing = sorted(name for name in imported_modules(path) if within(name, RUN_LAYER))
    assert not crossing, f"{path.name} imports {crossing}"


def test_the_loss_functions_import_nothing_but_torch_and_the_standard_library():
    imported = imported_modules(PACKAGE / "losses.py")
    allowed_roots = {"torch", "math", "typing", "dataclasses", "__future__"}
    assert {name.split(".")[0] for name in imported} <= allowed_roots, imported


LIBRARY = library_modules()


@pytest.mark.parametrize("path", LIBRARY, ids=ids(LIBRARY))
def test_only_the_entry_points_parse_arguments(path):
    assert "argparse" not in imported_modules(path), f"{path.name} parses arguments; move that to an entry point"


def test_the_import_reader_sees_what_these_rules_forbid(tmp_path):
    """The reader itself: a local import inside a function, a relative import and a
    ``from package import module`` all count, so a rule above cannot pass by missing them."""
    module = tmp_path / "recbole_llmd4rec" / "model" / "probe.py"
    module.parent.mkdir(parents=True)
    module.write_text("def f():\n    from .. import quick_start\n    from ..trainer import mutual\n    import argparse\n")
    names = imported_modules(module, root=tmp_path)
    assert {"recbole_llmd4rec.quick_start", "recbole_llmd4rec.trainer.mutual", "argparse"} <= names
    assert within("recbole_llmd4rec.trainer.mutual", TRAINERS)
    assert not within("recbole_llmd4rec.trainers_other", TRAINERS)
