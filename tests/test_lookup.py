"""Model and trainer lookup: plugin first, RecBole after, clear errors otherwise."""

import importlib.machinery
import sys
import types

import pytest
from recbole.model.sequential_recommender.gru4rec import GRU4Rec
from recbole.model.sequential_recommender.sasrec import SASRec
from recbole.trainer import Trainer

import recbole_llmd4rec
from recbole_llmd4rec.errors import LLMD4RecError
from recbole_llmd4rec.trainer import S3RecTrainer


def test_recbole_models_are_found():
    assert recbole_llmd4rec.get_model("SASRec") is SASRec
    assert recbole_llmd4rec.get_model("GRU4Rec") is GRU4Rec


def test_plugin_module_wins_over_recbole(monkeypatch):
    module_name = "recbole_llmd4rec.model.gru4rec"
    plugin_module = types.ModuleType(module_name)
    plugin_module.__spec__ = importlib.machinery.ModuleSpec(module_name, loader=None)

    class GRU4RecPlugin:
        pass

    plugin_module.GRU4Rec = GRU4RecPlugin
    monkeypatch.setitem(sys.modules, module_name, plugin_module)
    assert recbole_llmd4rec.get_model("GRU4Rec") is GRU4RecPlugin


@pytest.mark.parametrize("name", ["NoSuchModel", "sasrec", ""])
def test_unknown_model_is_a_clear_error(name):
    with pytest.raises(LLMD4RecError, match="unknown model|non-empty"):
        recbole_llmd4rec.get_model(name)


def test_trainer_lookup_prefers_plugin_trainers():
    from recbole.utils import ModelType

    assert recbole_llmd4rec.get_trainer(ModelType.SEQUENTIAL, "S3Rec") is S3RecTrainer
    # RecBole's models that train with RecBole's Trainer get it with resume (a subclass).
    from recbole_llmd4rec.trainer import ResumableTrainer

    for name in ("SASRec", "GRU4Rec", "SASRecD"):
        assert recbole_llmd4rec.get_trainer(ModelType.SEQUENTIAL, name) is ResumableTrainer
    assert issubclass(ResumableTrainer, Trainer)
