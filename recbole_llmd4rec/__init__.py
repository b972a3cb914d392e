"""recbole-llmd4rec: LLMD4Rec (bidirectional distillation between SASRec and an
LLM-centric recommender) as a RecBole plugin.

``compat`` is imported first: it patches numpy and torch for recbole 1.2.1.
"""

from recbole_llmd4rec import compat  # noqa: F401  (must precede every recbole import)
from recbole_llmd4rec.config import Config
from recbole_llmd4rec.errors import LLMD4RecError
from recbole_llmd4rec.quick_start import load_data_and_model, run_llmd4rec
from recbole_llmd4rec.utils import get_model, get_trainer

__version__ = "0.1.0"

__all__ = ["Config", "LLMD4RecError", "get_model", "get_trainer", "load_data_and_model", "run_llmd4rec"]
