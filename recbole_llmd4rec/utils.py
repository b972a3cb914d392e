"""Model and trainer lookup: the plugin first, RecBole after.

RecBole's own ``get_model`` only searches RecBole's modules, and for an unknown name it
reaches ``exlib_recommender`` and fails on a missing ``lightgbm``. These versions know
the plugin's models and say plainly when a name is unknown.
"""

import importlib
import importlib.util

from recbole.trainer import Trainer
from recbole.utils import get_trainer as recbole_get_trainer

from recbole_llmd4rec.errors import LLMD4RecError

PLUGIN_MODEL_PACKAGE = "recbole_llmd4rec.model"
PLUGIN_TRAINER_MODULE = "recbole_llmd4rec.trainer"

# RecBole's model packages, in the order RecBole searches them. exlib_recommender imports
# xgboost and lightgbm, so it is searched only for the two models that live there.
RECBOLE_MODEL_PACKAGES = (
    "recbole.model.general_recommender",
    "recbole.model.context_aware_recommender",
    "recbole.model.sequential_recommender",
    "recbole.model.knowledge_aware_recommender",
)
RECBOLE_EXLIB_MODELS = {"xgboost": "XGBoost", "lightgbm": "LightGBM"}


def _find_class(package, model_name):
    module_path = f"{package}.{model_name.lower()}"
    if importlib.util.find_spec(module_path) is None:
        return None
    return getattr(importlib.import_module(module_path), model_name, None)


def plugin_model_names():
    """Names of the models this plugin defines (from ``recbole_llmd4rec.model``)."""
    package = importlib.import_module(PLUGIN_MODEL_PACKAGE)
    return sorted(getattr(package, "__all__", []))


def get_model(model_name):
    """Return the model class named ``model_name``: plugin models first, then RecBole's."""
    if not isinstance(model_name, str) or not model_name:
        raise LLMD4RecError(f"model name must be a non-empty string, got {model_name!r}")
    model_class = _find_class(PLUGIN_MODEL_PACKAGE, model_name)
    if model_class is not None:
        return model_class
    for package in RECBOLE_MODEL_PACKAGES:
        model_class = _find_class(package, model_name)
        if model_class is not None:
            return model_class
    if model_name.lower() in RECBOLE_EXLIB_MODELS:
        try:
            return _find_class("recbole.model.exlib_recommender", model_name)
        except ImportError as exc:
            raise LLMD4RecError(
                f"model {model_name} needs the package '{exc.name}': pip install {exc.name}"
            ) from None
    raise LLMD4RecError(
        f"unknown model '{model_name}': not a plugin model ({', '.join(plugin_model_names()) or 'none'}) "
        f"nor a RecBole model; names are case-sensitive, e.g. SASRec, GRU4Rec, S3Rec"
    )


def get_trainer(model_type, model_name):
    """Return the trainer class for a model: ``<Model>Trainer`` of the plugin, else RecBole's."""
    trainer_module = importlib.import_module(PLUGIN_TRAINER_MODULE)
    trainer_class = getattr(trainer_module, f"{model_name}Trainer", None)
    if trainer_class is not None:
        return trainer_class
    recbole_trainer = recbole_get_trainer(model_type, model_name)
    # The same Trainer, with atomic checkpoints and resume after an interruption.
    return trainer_module.ResumableTrainer if recbole_trainer is Trainer else recbole_trainer
