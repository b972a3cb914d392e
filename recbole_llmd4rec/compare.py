"""The side-by-side comparison's public names, where earlier versions kept them: the comparison
itself lives in ``recbole_llmd4rec.experiments`` (methods, child, tables, runner)."""

from recbole_llmd4rec.atomic import write_json_atomically
from recbole_llmd4rec.experiments.child import median_user_latency_ms, record_path, rows_of_round, run_one
from recbole_llmd4rec.experiments.methods import (
    ABLATIONS, ALL_METHODS, CONTROLS, CRM_LOSS_KEY, IMPROVEMENTS, METHODS, OPT_IN, Method, select_methods,
)
from recbole_llmd4rec.experiments.runner import DEFAULT_SEEDS, FIRST_SEED, Comparison, compare, yaml_settings
from recbole_llmd4rec.experiments.tables import against_spread

__all__ = [
    "ABLATIONS", "ALL_METHODS", "CONTROLS", "CRM_LOSS_KEY", "Comparison", "DEFAULT_SEEDS", "FIRST_SEED",
    "IMPROVEMENTS", "METHODS", "Method", "OPT_IN", "against_spread", "compare", "median_user_latency_ms",
    "record_path", "rows_of_round", "run_one", "select_methods", "write_json_atomically", "yaml_settings",
]
