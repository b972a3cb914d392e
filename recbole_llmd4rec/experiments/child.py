"""One (method, seed) of a comparison, run in a fresh interpreter: train and test it, keep what
later runs read, and write its record.

    python -m recbole_llmd4rec.experiments.child SPEC_JSON   (what the comparison runs)
"""

import json
import os
import statistics
import sys
import time
from pathlib import Path

from recbole_llmd4rec.atomic import copy_atomically, write_json_atomically
from recbole_llmd4rec.errors import LLMD4RecError, report_bad_input
from recbole_llmd4rec.experiments.methods import (
    ALL_METHODS, CRM_LOSS_KEY, KEPT_MODEL_SUFFIX, KEPT_ROUND1_SUFFIX, MODEL_BASES, ROUND1_BASES,
)

NOT_METRICS = ("round", "model", "split", "phase_seconds", "epochs")  # the other columns of rounds.json
LATENCY_USERS = 200  # users scored one at a time for the per-user inference latency
LATENCY_WARMUP = 10  # users scored first and not timed (allocations, kernel selection)


def run_one(spec):
    """Train and test one method for one seed (``spec`` from :func:`Comparison.spec`); write its
    result file. Runs in the child interpreter."""
    from recbole_llmd4rec.quick_start import run_llmd4rec

    method = next(m for m in ALL_METHODS if m.name == spec["method"])
    if method.first_round_of:
        raise LLMD4RecError(f"{method.name} is read from {method.first_round_of}'s run, not trained")
    config_dict = {**method.settings, **spec["checkpoints"], "seed": spec["seed"],
                   "checkpoint_dir": spec["run_dir"]}
    result = run_llmd4rec(method.model, spec["dataset"], spec["config_files"], config_dict,
                          cmd_args=spec["overrides"])
    saved_model_file = result["saved_model_file"]
    model_folder = Path(saved_model_file).parent  # an LLMD4Rec run's folder, with its rounds and states
    result_file = Path(spec["result_file"])
    kept_model_file = result_file.with_suffix(KEPT_MODEL_SUFFIX)
    if method.model == "SASRecD":  # what users deploy, and what the distillation runs start from
        saved_model_file = export_as_recbole_sasrec(saved_model_file, kept_model_file)
    elif method.name in MODEL_BASES:
        saved_model_file = copy_atomically(saved_model_file, kept_model_file)
    import torch

    record = {"method": method.name, "seed": spec["seed"], "fingerprint": spec["fingerprint"],
              CRM_LOSS_KEY: spec[CRM_LOSS_KEY],
              # the condition the times were measured under (OMP_NUM_THREADS sets it)
              "torch_threads": torch.get_num_threads(),
              # DLLM2Rec writes no SASRec checkpoint (see MutualDistillTrainer._export)
              "checkpoint": record_path(saved_model_file, spec["out_dir"]) if os.path.isfile(saved_model_file) else None,
              "rows": {}, "train_seconds": {}, "latency_ms": {}}
    if method.name in ROUND1_BASES:
        from recbole_llmd4rec.trainer import ROUND_STATE_FILE

        round1_state = model_folder / ROUND_STATE_FILE.format(1)
        kept_round1 = copy_atomically(round1_state, result_file.with_name(result_file.stem + KEPT_ROUND1_SUFFIX))
        record["round1_state"] = record_path(kept_round1, spec["out_dir"])
    if method.model == "LLMD4Rec":
        from recbole_llmd4rec.trainer import PHASES_FILE

        rounds = json.loads((model_folder / "rounds.json").read_text())
        record["rounds"] = rounds  # every round's rows, which the "w/o loop" ablation reads
        # every phase's start score, validation curve and chosen epoch
        record["phases"] = json.loads((model_folder / PHASES_FILE).read_text())
        record.update(rows_of_round(rounds, max(row["round"] for row in rounds), method.rows))
    else:
        record["rows"][method.name] = {metric: float(value) for metric, value in result["test_result"].items()}
        record["train_seconds"][method.name] = result["train_seconds"]
        record["phases"] = [{"phase": "train", "valid_curve": sorted(map(list, result["valid_curve"].items())),
                             "chosen_epoch": result["best_epoch"]}]
    for row_name in method.latency:
        record["latency_ms"][row_name] = per_user_latency_ms(saved_model_file)
    write_json_atomically(spec["result_file"], record)


def record_path(path, out_dir):
    """``path`` as a record names it: relative to the comparison's folder, which may move
    (another machine, a copy), unless it lies outside (e.g. a ``--checkpoint_dir`` override)."""
    relative = os.path.relpath(os.path.abspath(path), out_dir)
    return os.path.abspath(path) if relative.split(os.sep)[0] == os.pardir else Path(relative).as_posix()


def rows_of_round(rounds, round_index, rows):
    """The test results of ``rows`` ((row name, "CRM" or "LLM"), ...) after round ``round_index``
    of an LLMD4Rec run's ``rounds`` (rounds.json), with the training time of rounds 1..round_index."""
    seconds = sum(row["phase_seconds"] for row in rounds if 0 < row["round"] <= round_index and row["split"] == "test")
    result = {"rows": {}, "train_seconds": {}}
    for row_name, part in rows:
        final = next(r for r in rounds if (r["round"], r["model"], r["split"]) == (round_index, part, "test"))
        result["rows"][row_name] = {key: value for key, value in final.items() if key not in NOT_METRICS}
        result["train_seconds"][row_name] = seconds
    return result


def export_as_recbole_sasrec(sasrecd_file, path):
    """A SASRecD checkpoint (its best epoch) saved as a RecBole SASRec checkpoint."""
    from recbole_llmd4rec.export import export_sasrec_checkpoint
    from recbole_llmd4rec.quick_start import load_data_and_model

    config, model, *_ = load_data_and_model(sasrecd_file)
    return export_sasrec_checkpoint(model, config, str(path))


def per_user_latency_ms(model_file):
    from recbole_llmd4rec.quick_start import load_data_and_model

    config, model, _, _, _, test_data = load_data_and_model(model_file)
    return median_user_latency_ms(config, model, test_data)


def median_user_latency_ms(config, model, test_data):
    """Median milliseconds to score every item for one test user, one user at a time, after
    ``LATENCY_WARMUP`` users."""
    import torch

    model.eval()
    synchronize = torch.cuda.synchronize if config["device"].type == "cuda" else (lambda: None)
    timings = []
    with torch.inference_mode():
        for batch in test_data:
            interaction = batch[0]
            for row in range(len(interaction)):
                user = interaction[row : row + 1].to(config["device"])
                synchronize()
                started = time.perf_counter()
                model.full_sort_predict(user)
                synchronize()
                timings.append(time.perf_counter() - started)
                if len(timings) >= LATENCY_WARMUP + LATENCY_USERS:
                    return 1000 * statistics.median(timings[LATENCY_WARMUP:])
    return 1000 * statistics.median(timings[LATENCY_WARMUP:] or timings)


if __name__ == "__main__":
    try:
        run_one(json.loads(sys.argv[1]))
    except LLMD4RecError as exc:  # the parent quotes the log's last line
        sys.exit(report_bad_input(exc))
