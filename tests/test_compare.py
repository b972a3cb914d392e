"""The side-by-side comparison: runs, reuse of finished runs, the tables' arithmetic."""

import json
import os
import re
import shutil
import socket
import time
from pathlib import Path

import pytest
import torch

from conftest import TESTS, TINY_YAML
from recbole_llmd4rec.atomic import write_json_atomically
from recbole_llmd4rec.experiments.methods import METHODS, select_methods
from recbole_llmd4rec.experiments.runner import Comparison, compare
from recbole_llmd4rec.experiments.tables import against_spread
from recbole_llmd4rec.errors import LLMD4RecError


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """SASRec, E4SRec, DLLM2Rec and LLMD4Rec on the tiny data set, one seed, one epoch per phase."""
    out = tmp_path_factory.mktemp("compare")
    # INFO: the runs' logs hold what users' logs hold (the status test reads one)
    overrides = [f"--data_path={TESTS / 'data'}", f"--llm_cache_dir={out / 'llm_cache'}", "--epochs=1", "--state=INFO"]
    arguments = ("tiny", [str(TINY_YAML)], overrides)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")  # the children's thread count, which the records report
        markdown = compare(*arguments, seeds=1, methods="SASRec,E4SRec,DLLM2Rec,LLMD4Rec", out_dir=out)
    return out, arguments, markdown


def test_every_method_gives_its_rows_and_the_tables(finished):
    out, _, markdown = finished
    for row in ("SASRec", "E4SRec", "DLLM2Rec", "LLMD4Rec_C", "LLMD4Rec_L"):
        assert f"| {row} | 1 |" in markdown
    assert "% vs SASRec" in markdown and "% vs E4SRec" in markdown
    assert not any(" +- " in line for line in markdown.splitlines() if line.startswith("| "))  # 1 seed: no sd
    assert "- LLMD4Rec_C vs DLLM2Rec: fewer than 2 seeds, no spread to judge by yet" in markdown
    lines = (out / "comparison-tiny.csv").read_text().splitlines()
    assert lines[0].startswith("method,seeds,hit@5,hit@5 sd,hit@10") and len(lines) == 1 + 5
    sasrec = json.loads((out / "SASRec" / "seed2020.json").read_text())
    llmd4rec = json.loads((out / "LLMD4Rec" / "seed2020.json").read_text())
    # The SASRec row (trained as SASRecD) is kept as a RecBole SASRec checkpoint, like LLMD4Rec_C,
    # and both latencies are measured on that stock class.
    for record in (sasrec, llmd4rec):
        assert torch.load(out / record["checkpoint"])["config"]["model"] == "SASRec"
    assert sasrec["latency_ms"]["SASRec"] > 0 and llmd4rec["latency_ms"]["LLMD4Rec_C"] > 0
    assert sasrec["torch_threads"] == llmd4rec["torch_threads"] == 1
    assert "torch threads per run: 1." in markdown
    # LLMD4Rec started from this seed's SASRec: its round 0 is that checkpoint's test result.
    rounds = json.loads(next((out / "LLMD4Rec" / "seed2020").glob("LLMD4Rec-*/rounds.json")).read_text())
    round0 = next(r for r in rounds if (r["round"], r["split"]) == (0, "test"))
    assert round0["ndcg@10"] == pytest.approx(sasrec["rows"]["SASRec"]["ndcg@10"], abs=1e-4)


def test_the_no_loop_ablation_is_round_1_of_the_llmd4rec_run(finished, tmp_path, monkeypatch):
    out, (dataset, files, overrides), _ = finished
    monkeypatch.setattr(Comparison, "_run_child", lambda self, spec: pytest.fail(f"{spec['method']} retrained"))
    markdown = Comparison(dataset, files, overrides, 1, select_methods("SASRec,LLMD4Rec,LLMD4Rec_no_loop", False),
                          out).run(log=lambda message: None)
    assert "| LLMD4Rec_C w/o loop | 1 |" in markdown and "| LLMD4Rec_L w/o loop | 1 |" in markdown
    derived = json.loads((out / "LLMD4Rec_no_loop" / "seed2020.json").read_text())
    full = json.loads((out / "LLMD4Rec" / "seed2020.json").read_text())
    assert derived["rows"]["LLMD4Rec_C w/o loop"] != full["rows"]["LLMD4Rec_C"]  # round 1 is not the last round
    # A record without the round table (edited by hand) is one error line.
    edited = Comparison(dataset, files, overrides, 1, select_methods("LLMD4Rec_no_loop", False), out)
    edited.records[("LLMD4Rec", 2020)] = {key: value for key, value in full.items() if key != "rounds"}
    no_loop = next(m for m in edited.methods if m.name == "LLMD4Rec_no_loop")
    with pytest.raises(LLMD4RecError, match="holds no round table: delete that file and rerun"):
        edited._first_round(no_loop, 2020, edited.spec(no_loop, 2020))
    monkeypatch.undo()

    # The same seed's LLMD4Rec trained with T_max = 1, in a child like every comparison run.
    one_round = Comparison(dataset, files, overrides + ["--mutual_rounds=1"], 1, [], tmp_path)
    sasrec = json.loads((out / "SASRec" / "seed2020.json").read_text())
    one_round.records[("SASRec", 2020)] = {**sasrec, "checkpoint": str(out / sasrec["checkpoint"])}
    spec = one_round.spec(next(m for m in METHODS if m.name == "LLMD4Rec"), 2020)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    one_round._run_child(spec)
    trained = json.loads((tmp_path / "LLMD4Rec" / "seed2020.json").read_text())
    assert [r["round"] for r in trained["rounds"]][-1] == 1
    for row in ("LLMD4Rec_C", "LLMD4Rec_L"):
        assert derived["rows"][f"{row} w/o loop"] == trained["rows"][row]


def test_the_llm_srec_row_is_the_seeds_e4srec_taught_by_its_sasrecs_user_states(finished, monkeypatch, tmp_path):
    """LLM-SRec trains one LLM phase from the seed's SASRec, which stays as it was; its row stands
    in the table against E4SRec, and LLMD4Rec_L is judged against it. The other runs are reused."""
    finished_out, (dataset, files, overrides), _ = finished
    out = tmp_path / "compare"
    shutil.copytree(finished_out, out, ignore=shutil.ignore_patterns("llm_cache", "DLLM2Rec*"))
    messages = []
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    markdown = Comparison(dataset, files, overrides, 1, select_methods("SASRec,E4SRec,LLMD4Rec,LLM-SRec", False),
                          out).run(log=messages.append)
    assert [m for m in messages if "reused" not in m] == ["compare: LLM-SRec, seed 2020 ..."]
    (row,) = [line for line in markdown.splitlines() if line.startswith("| LLM-SRec | 1 |")]
    assert "% vs E4SRec)" in row
    # E4SRec is the base of two rows now; each cell still gives its change against it once
    (llm_row,) = [line for line in markdown.splitlines() if line.startswith("| LLMD4Rec_L | 1 |")]
    assert all(cell.count("vs E4SRec") == 1 for line in (row, llm_row) for cell in line.split(" | ")[2:-2])
    assert "- LLMD4Rec_L vs LLM-SRec: fewer than 2 seeds, no spread to judge by yet" in markdown
    record = json.loads((out / "LLM-SRec" / "seed2020.json").read_text())
    assert list(record["rows"]) == ["LLM-SRec"] and [p["phase"] for p in record["phases"]] == ["round1_llm"]
    sasrec = json.loads((out / "SASRec" / "seed2020.json").read_text())["rows"]["SASRec"]
    crm = {r["round"]: r for r in record["rounds"] if (r["model"], r["split"]) == ("CRM", "test")}
    assert crm[0]["ndcg@10"] == pytest.approx(sasrec["ndcg@10"], abs=1e-4)  # started from the seed's SASRec
    assert crm[1] == {**crm[0], "round": 1}  # which did not change
    # its LLM phase read the SASRec's user states (the tiny SASRec's width: 16), not its logits
    assert "x (user_state (16,) float16)" in (out / "LLM-SRec" / "seed2020" / "run.log").read_text()


def test_a_rerun_reuses_finished_runs_and_changed_settings_retrain(finished, monkeypatch):
    out, (dataset, files, overrides), _ = finished
    launched = []
    monkeypatch.setattr(Comparison, "_run_child", lambda self, spec: launched.append(spec["method"]))
    comparison = Comparison(dataset, files, overrides, 1, select_methods("SASRec,E4SRec", False), out)
    comparison.run(log=lambda message: None)
    assert launched == []
    changed = Comparison(dataset, files, overrides + ["--learning_rate=0.01"], 1,
                         select_methods("SASRec", False), out)
    with pytest.raises(TypeError):  # the stub launches nothing, so no record comes back
        changed.run(log=lambda message: None)
    assert launched == ["SASRec"]


def hand_made_record(rows, seconds=1.0, metrics=("hit@10", "ndcg@10")):
    """A finished run's record: ``rows`` maps each row name to its value on every metric."""
    return {"rows": {row: {m: value for m in metrics} for row, value in rows.items()},
            "train_seconds": {row: seconds for row in rows}, "latency_ms": {}}


def test_table_means_spreads_and_improvements_on_hand_made_records(tmp_path):
    comparison = Comparison("toy", [], [], 2, select_methods("SASRec,E4SRec,LLMD4Rec", False), tmp_path)
    values = {"SASRec": (0.10, 0.20), "LLMD4Rec_C": (0.12, 0.26), "LLMD4Rec_L": (0.30, 0.30)}
    for seed_index, seed in enumerate(comparison.seeds):
        for method, rows in (("SASRec", ["SASRec"]), ("LLMD4Rec", ["LLMD4Rec_C", "LLMD4Rec_L"])):
            comparison.records[(method, seed)] = hand_made_record(
                {row: values[row][seed_index] for row in rows}, seconds=10.0 * (seed_index + 1),
                metrics=("hit@5", "hit@10", "hit@20", "ndcg@5", "ndcg@10", "ndcg@20"))
    rows = {row["method"]: row for row in comparison.table_rows()}
    assert rows["SASRec"]["ndcg@10"] == pytest.approx(0.15) and rows["SASRec"]["ndcg@10 sd"] == pytest.approx(0.0707107)
    assert rows["LLMD4Rec_C"]["ndcg@10"] == pytest.approx(0.19)
    assert rows["LLMD4Rec_C"]["ndcg@10 vs SASRec"] == pytest.approx(100 * (0.19 - 0.15) / 0.15)
    assert rows["SASRec"]["train_s"] == pytest.approx(15.0)
    assert "ndcg@10 vs E4SRec" not in rows["LLMD4Rec_L"]  # no E4SRec row finished to compare with
    assert rows["LLMD4Rec_L"]["ndcg@10 sd"] == 0.0


def test_a_change_mid_comparison_is_over_the_seeds_both_rows_finished(tmp_path):
    comparison = Comparison("toy", [], [], 3, select_methods("SASRec,LLMD4Rec", False), tmp_path)
    first, second, third = comparison.seeds
    for seed, value in ((first, 0.10), (second, 0.20), (third, 0.36)):
        comparison.records[("SASRec", seed)] = hand_made_record({"SASRec": value})
    # LLMD4Rec has finished seeds 1 (its CRM kept its SASRec start) and 3 (0.03 above its SASRec)
    comparison.records[("LLMD4Rec", first)] = hand_made_record({"LLMD4Rec_C": 0.10, "LLMD4Rec_L": 0.5})
    comparison.records[("LLMD4Rec", third)] = hand_made_record({"LLMD4Rec_C": 0.39, "LLMD4Rec_L": 0.5})
    rows = {row["method"]: row for row in comparison.table_rows()}
    assert rows["SASRec"]["ndcg@10"] == pytest.approx(0.22) and rows["LLMD4Rec_C"]["seeds"] == 2
    # against SASRec's seeds 1 and 3 (mean 0.23), not all three (0.22)
    assert rows["LLMD4Rec_C"]["ndcg@10 vs SASRec"] == pytest.approx(100 * (0.245 - 0.23) / 0.23)
    del comparison.records[("LLMD4Rec", third)]
    rows = {row["method"]: row for row in comparison.table_rows()}
    assert rows["LLMD4Rec_C"]["ndcg@10 vs SASRec"] == pytest.approx(0.0)  # not -55 % against the 3-seed mean


def test_a_base_trained_again_rewrites_the_tables_with_its_time(tmp_path):
    comparison = Comparison("toy", [], [], 1, select_methods("SASRec", False), tmp_path)
    comparison.records[("SASRec", 2020)] = hand_made_record({"SASRec": 0.1}, seconds=500.0)
    comparison.write_tables()

    def train(self, spec):  # the run again: the same rows in a new time
        write_json_atomically(spec["result_file"], {**hand_made_record({"SASRec": 0.1}, seconds=321.0),
                                                    "fingerprint": spec["fingerprint"]})

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Comparison, "_run_child", train)
        comparison._train_again("SASRec", 2020, log=pytest.fail)
    table = (tmp_path / "comparison-toy.md").read_text()
    assert "| SASRec | 1 | 0.1000 | 0.1000 | 321 |" in table


def test_the_ablation_rows_get_their_own_table_against_the_full_run(tmp_path):
    comparison = Comparison("toy", [], [], 2, select_methods("SASRec,LLMD4Rec,LLMD4Rec_no_sample_weight", False),
                            tmp_path)
    metrics = ("hit@10", "ndcg@10")
    values = {"SASRec": (0.10, 0.12), "LLMD4Rec_C": (0.20, 0.22), "LLMD4Rec_L": (0.30, 0.32),
              "LLMD4Rec_C w/o w": (0.15, 0.17), "LLMD4Rec_L w/o w": (0.36, 0.38)}
    made = {"SASRec": ["SASRec"], "LLMD4Rec": ["LLMD4Rec_C", "LLMD4Rec_L"],
            "LLMD4Rec_no_sample_weight": ["LLMD4Rec_C w/o w", "LLMD4Rec_L w/o w"]}
    for seed_index, seed in enumerate(comparison.seeds):
        for method, rows in made.items():
            comparison.records[(method, seed)] = hand_made_record({row: values[row][seed_index] for row in rows},
                                                                  metrics=metrics)
    rows = {row["method"]: row for row in comparison.table_rows()}
    assert rows["LLMD4Rec_C w/o w"]["ndcg@10 vs LLMD4Rec_C"] == pytest.approx(100 * (0.16 - 0.21) / 0.21)
    assert rows["LLMD4Rec_L w/o w"]["ndcg@10 vs LLMD4Rec_L"] == pytest.approx(100 * (0.37 - 0.31) / 0.31)
    main, ablation = comparison.markdown(list(rows.values()), list(metrics)).split("Ablation (")
    assert "w/o w" not in main.split("train s:")[0]  # the main table holds no ablation row
    lines = [line for line in ablation.splitlines() if line.startswith("| LLMD4Rec")]
    assert [line.split(" | ")[0] for line in lines] == [
        "| LLMD4Rec_C", "| LLMD4Rec_C w/o w", "| LLMD4Rec_L", "| LLMD4Rec_L w/o w"]
    assert "(-23.8% vs LLMD4Rec_C)" in lines[1] and "(+19.4% vs LLMD4Rec_L)" in lines[3]
    assert "% vs SASRec" not in lines[0]  # the full row's own change stands in the main table
    # the full run should beat each variant: 0.05 apart with sds of 0.0141 on both sides
    assert "- LLMD4Rec_C vs LLMD4Rec_C w/o w: higher on HR@10, NDCG@10" in ablation
    assert "- LLMD4Rec_L vs LLMD4Rec_L w/o w: lower on HR@10, NDCG@10" in ablation


def test_the_spread_judgement_on_hand_made_rows():
    def row(method, seeds, mean, sd):
        return {"method": method, "seeds": seeds, "ndcg@10": mean, "ndcg@10 sd": sd, "hit@10": mean, "hit@10 sd": sd}

    sasrec = row("SASRec", 3, 0.040, 0.001)
    assert against_spread(row("LLMD4Rec_C", 3, 0.0425, 0.002), sasrec, "ndcg@10") == "higher"  # 0.0025 > 0.002
    assert against_spread(row("LLMD4Rec_C", 3, 0.0415, 0.002), sasrec, "ndcg@10") == "within"  # 0.0015 <= 0.002
    assert against_spread(row("LLMD4Rec_C", 3, 0.0385, 0.0005), sasrec, "ndcg@10") == "lower"  # 0.0015 > 0.001
    assert against_spread(row("LLMD4Rec_C", 1, 0.09, 0.0), sasrec, "ndcg@10") is None  # one seed: no spread

    lines = Comparison.spread_lines([sasrec, row("LLMD4Rec_C", 3, 0.0425, 0.002), row("DLLM2Rec", 1, 0.05, 0.0),
                                     row("E4SRec", 3, 0.03, 0.001)], ["hit@10", "ndcg@10"])
    assert "- LLMD4Rec_C vs SASRec: higher on HR@10, NDCG@10" in lines
    assert "- LLMD4Rec_C (3 seeds) vs DLLM2Rec (1 seed): fewer than 2 seeds, no spread to judge by yet" in lines
    assert not any("vs E4SRec" in line for line in lines)  # no LLMD4Rec_L row to judge


def test_a_method_without_its_base_is_refused(tmp_path):
    comparison = Comparison("toy", [], [], 1, select_methods("LLMD4Rec", False), tmp_path)
    with pytest.raises(LLMD4RecError, match="LLMD4Rec starts from SASRec: add it to --methods"):
        comparison.run(log=lambda message: None)
    assert comparison.status() == [("LLMD4Rec", 2020, "starts from SASRec: add it to --methods")]
    with pytest.raises(LLMD4RecError, match="unknown method 'BERT4Rec'"):
        select_methods("SASRec,BERT4Rec", False)
    assert [m.name for m in select_methods(None, True)][: len(METHODS)] == [m.name for m in METHODS]
    assert "SASRec_RecBole" not in [m.name for m in select_methods(None, True)]
    # w/o loop is read from the LLMD4Rec run, which is added; the trained ablations come first
    assert [m.name for m in select_methods("SASRec", True)] == [
        "SASRec", "LLMD4Rec", "LLMD4Rec_no_sample_weight", "LLMD4Rec_no_embedding_update", "LLMD4Rec_no_loop"]
    # bases are checked before anything trains
    comparison = Comparison("toy", [], [], 1, select_methods("SASRec,LLMD4Rec_no_sample_weight,KD_LLM_to_CRM",
                                                             False), tmp_path)
    with pytest.raises(LLMD4RecError, match="KD_LLM_to_CRM starts from E4SRec"):
        comparison.run(log=lambda message: pytest.fail(f"started: {message}"))
    assert [m.model for m in select_methods("SASRec_RecBole,SASRec", False)] == ["SASRecD", "SASRec"]


def test_the_no_embedding_update_ablation_trains_only_round_2_from_the_llmd4rec_run(finished, monkeypatch):
    out, (dataset, files, overrides), _ = finished
    comparison = Comparison(dataset, files, overrides, 1, select_methods("SASRec,LLMD4Rec_no_embedding_update", False),
                            out)
    assert [m.name for m in comparison.methods] == ["SASRec", "LLMD4Rec", "LLMD4Rec_no_embedding_update"]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    comparison.run(log=lambda message: None)
    full = json.loads((out / "LLMD4Rec" / "seed2020.json").read_text())
    ablated = json.loads((out / "LLMD4Rec_no_embedding_update" / "seed2020.json").read_text())
    # Rounds 0-1 are taken over, times included (a retrained phase would take other seconds);
    # only round 2 ran here, so only its state is kept.
    assert ablated["rounds"][:6] == full["rounds"][:6]
    kept = [path.name for path in (out / "LLMD4Rec_no_embedding_update" / "seed2020").glob("LLMD4Rec-*/state_round*")]
    assert kept == ["state_round2.pth"]
    assert [row["round"] for row in ablated["rounds"]][-1] == 2
    # It started from the round-1 state kept beside the LLMD4Rec record, outside the run folder.
    method = next(m for m in comparison.methods if m.name == "LLMD4Rec_no_embedding_update")
    sasrec = json.loads((out / "SASRec" / "seed2020.json").read_text())
    assert full["round1_state"] == "LLMD4Rec/seed2020.round1.pth"
    assert comparison.spec(method, 2020)["checkpoints"] == {"crm_checkpoint": str(out / "SASRec" / "seed2020.pth"),
                                                            "start_state": str(out / full["round1_state"])}
    # Without that state (a record of an older version, or its file gone), the spec trains every round.
    without = Comparison(dataset, files, overrides, 1, [], out)
    without.records[("SASRec", 2020)] = sasrec
    without.records[("LLMD4Rec", 2020)] = {key: value for key, value in full.items() if key != "round1_state"}
    assert without.spec(method, 2020)["checkpoints"] == {"crm_checkpoint": str(out / sasrec["checkpoint"])}
    without.records[("LLMD4Rec", 2020)] = {**full, "round1_state": "LLMD4Rec/gone.round1.pth"}
    assert without.spec(method, 2020)["checkpoints"] == {"crm_checkpoint": str(out / sasrec["checkpoint"])}


def test_status_names_each_runs_state_and_trains_nothing(finished, monkeypatch, tmp_path):
    finished_out, (dataset, files, overrides), _ = finished
    # A copy of the finished runs' records, without what other tests of this module added
    out = tmp_path / "compare"
    shutil.copytree(finished_out, out, ignore=shutil.ignore_patterns("*.pth", "llm_cache", "LLMD4Rec_no_*"))
    monkeypatch.setattr(Comparison, "_run_child", lambda self, spec: pytest.fail(f"{spec['method']} launched"))
    (out / "GRU4Rec" / "seed2020").mkdir(parents=True)  # as a run cut short leaves it
    # a run cut short later, in its last phase: a real LLMD4Rec log stands in for its log
    (out / "GRU4Rec" / "seed2021").mkdir()
    shutil.copy(out / "LLMD4Rec" / "seed2020" / "run.log", out / "GRU4Rec" / "seed2021" / "run.log")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    methods = select_methods("SASRec,E4SRec,LLMD4Rec,DLLM2Rec,LEADER,GRU4Rec,LLMD4Rec_no_loop", False)
    states = {(name, seed): state for name, seed, state in Comparison(dataset, files, overrides, 2, methods,
                                                                      out).status()}
    assert states[("SASRec", 2020)] == states[("DLLM2Rec", 2020)] == "finished"
    # the copy holds no model files: what starts from SASRec and E4SRec trains them again first
    assert states[("LEADER", 2020)] == "to train, after SASRec, E4SRec (model file gone) trains again"
    assert states[("SASRec", 2021)] == "to train"
    assert states[("E4SRec", 2021)] == "waits for SASRec"
    assert states[("DLLM2Rec", 2021)] == "waits for SASRec, E4SRec"
    assert states[("GRU4Rec", 2020)] == "started: continues from what it saved"
    # two rounds (LLMD4Rec.yaml), one epoch per phase: the last phase's only epoch is epoch 0
    assert re.fullmatch(r"started: continues from what it saved \(last logged: phase round2_crm, "
                        r"epoch 0 validated 0\.\d{4}\)", states[("GRU4Rec", 2021)])
    assert states[("LLMD4Rec_no_loop", 2020)] == "no training: read from round 1 of LLMD4Rec"
    changed = Comparison(dataset, files, overrides + ["--learning_rate=0.01"], 1, select_methods("SASRec", False), out)
    assert changed.status() == [("SASRec", 2020, "trains again: its result is from other settings")]
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_status_ends_with_the_finished_count_and_their_training_hours(finished, monkeypatch, tmp_path, capsys):
    finished_out, (dataset, files, overrides), _ = finished
    out = tmp_path / "compare"
    shutil.copytree(finished_out, out, ignore=shutil.ignore_patterns("llm_cache", "LLMD4Rec_no_*"))
    monkeypatch.setattr(Comparison, "_run_child", lambda self, spec: pytest.fail(f"{spec['method']} launched"))
    methods = "SASRec,E4SRec,DLLM2Rec,LLMD4Rec,LLMD4Rec_no_loop"
    Comparison(dataset, files, overrides, 1, select_methods(methods, False), out).run(log=lambda message: None)
    # hand-made times: an LLMD4Rec run's two rows share one training; w/o loop trained nothing of its own
    hand_made = {"SASRec": 3600.0, "E4SRec": 1800.0, "DLLM2Rec": 1800.0, "LLMD4Rec": 7200.0, "LLMD4Rec_no_loop": 3600.0}
    for name, seconds in hand_made.items():
        record_file = out / name / "seed2020.json"
        record = json.loads(record_file.read_text())
        record["train_seconds"] = {row: seconds for row in record["train_seconds"]}
        record_file.write_text(json.dumps(record))
    text = compare(dataset, files, overrides, seeds=2, methods=methods, out_dir=out, status=True)
    assert text.splitlines()[-1] == "5 of 10 runs finished, after 4.0 h of training"
    assert capsys.readouterr().out.rstrip().endswith("nothing was trained)")


def test_tables_rebuilds_the_whole_table_from_finished_results_and_trains_nothing(finished, monkeypatch, tmp_path,
                                                                                   capsys):
    finished_out, (dataset, files, overrides), markdown = finished
    out = tmp_path / "compare"
    shutil.copytree(finished_out, out, ignore=shutil.ignore_patterns("llm_cache", "LLMD4Rec_no_*"))
    monkeypatch.setattr(Comparison, "_run_child", lambda self, spec: pytest.fail(f"{spec['method']} launched"))
    methods = "SASRec,E4SRec,DLLM2Rec,LLMD4Rec"
    # a side run with --methods leaves tables of its own methods only
    side = compare(dataset, files, overrides, seeds=1, methods="SASRec", out_dir=out)
    assert "| SASRec | 1 |" in side and "LLMD4Rec_C" not in (out / f"comparison-{dataset}.md").read_text()
    records = sorted((p, p.read_bytes()) for p in out.rglob("*.json"))
    rebuilt = compare(dataset, files, overrides, seeds=1, methods=methods, out_dir=out, tables=True)
    assert rebuilt == markdown == (out / f"comparison-{dataset}.md").read_text()
    assert len((out / f"comparison-{dataset}.csv").read_text().splitlines()) == 1 + 5
    assert sorted((p, p.read_bytes()) for p in out.rglob("*.json")) == records
    assert "(from 4 finished results; nothing was trained)" in capsys.readouterr().out
    # with --status too, both are printed; the tables are returned
    assert compare(dataset, files, overrides, seeds=2, methods=methods, out_dir=out, status=True, tables=True) \
        .startswith("Data set tiny; CRM loss: cross-entropy over all items (the strong regime), E4SRec's "
                    "cross-entropy over all items; seeds 2020, 2021; overrides: --data_path=DIR --llm_cache_dir=DIR")
    assert "4 of 8 runs finished" in capsys.readouterr().out
    # no finished result (other settings here): one error, and the tables already there stay
    before = (out / f"comparison-{dataset}.md").read_text()
    with pytest.raises(LLMD4RecError, match="--tables: no finished result in .* run the same command without"):
        compare(dataset, files, overrides + ["--learning_rate=0.01"], seeds=1, methods=methods, out_dir=out,
                tables=True)
    assert (out / f"comparison-{dataset}.md").read_text() == before


def test_as_recorded_builds_the_tables_from_records_other_settings_made_and_only_with_tables(tmp_path, capsys):
    """Records an older version of the code kept carry a fingerprint of that version's settings:
    --tables refuses them, --tables --as_recorded reads them as they are and says so."""
    values = {2020: {"SASRec": 0.10, "LLMD4Rec_C": 0.12, "LLMD4Rec_L": 0.30},
              2021: {"SASRec": 0.20, "LLMD4Rec_C": 0.26, "LLMD4Rec_L": 0.34}}
    for seed, by_row in values.items():
        for method, rows in (("SASRec", ["SASRec"]), ("LLMD4Rec", ["LLMD4Rec_C", "LLMD4Rec_L"])):
            write_json_atomically(tmp_path / method / f"seed{seed}.json",
                                  {**hand_made_record({row: by_row[row] for row in rows}), "fingerprint": "older"})
    write_json_atomically(tmp_path / "GRU4Rec" / "seed2020.json",  # not a chosen method: not read
                          {**hand_made_record({"GRU4Rec": 0.5}), "fingerprint": "older"})
    arguments = ("toy", [], [], 2, "SASRec,LLMD4Rec")
    with pytest.raises(LLMD4RecError, match=r"no finished result .* \(--as_recorded reads records that older code kept\)"):
        compare(*arguments, out_dir=tmp_path, tables=True)
    for status, tables in ((False, False), (True, True)):
        with pytest.raises(LLMD4RecError, match="--as_recorded only goes with --tables, without --status"):
            compare(*arguments, out_dir=tmp_path, as_recorded=True, status=status, tables=tables)
    markdown = compare(*arguments, out_dir=tmp_path, tables=True, as_recorded=True)
    assert "Records read as recorded (--as_recorded: their settings were not checked against these)." in markdown
    assert "| SASRec | 2 | 0.1500 +- 0.0707 | 0.1500 +- 0.0707 |" in markdown
    assert "| LLMD4Rec_C | 2 | 0.1900 +- 0.0990 (+26.7% vs SASRec) |" in markdown and "GRU4Rec" not in markdown
    assert (tmp_path / "comparison-toy.md").read_text() == markdown
    assert "(from 4 finished results; nothing was trained)" in capsys.readouterr().out
    # a file that is not a record of its method is one error line naming it, and the tables stay
    llmd4rec_rows = {"LLMD4Rec_C": 0.26, "LLMD4Rec_L": 0.34}
    broken = {"no row 'LLMD4Rec_C'": hand_made_record({"SASRec": 0.2}),
              "row 'LLMD4Rec_C' has metrics hit@10, the other records hit@10, ndcg@10":
                  hand_made_record(llmd4rec_rows, metrics=("hit@10",)),
              "no train_seconds of row 'LLMD4Rec_L'":
                  {**hand_made_record(llmd4rec_rows), "train_seconds": {"LLMD4Rec_C": 1.0}},
              "no rows": ["not", "a", "record"]}
    for problem, record in broken.items():
        write_json_atomically(tmp_path / "LLMD4Rec" / "seed2021.json", record)
        with pytest.raises(LLMD4RecError, match=re.escape(f"LLMD4Rec/seed2021.json is not a LLMD4Rec record the "
                                                          f"tables can read ({problem}); move it out")):
            compare(*arguments, out_dir=tmp_path, tables=True, as_recorded=True)
    assert (tmp_path / "comparison-toy.md").read_text() == markdown


@pytest.mark.parametrize("option", ["--status", "--tables", "--as_recorded", "--ablation", "--seeds=2",
                                    "--methods=SASRec", "--compare_dir=x"])
def test_a_compare_option_without_compare_is_one_error_line(option, capsys):
    import run_llmd4rec as run_script_module

    assert run_script_module.main([option]) == 2
    assert capsys.readouterr().err == f"error: {option.split('=')[0]} only goes with --compare; add --compare or drop it\n"


def test_an_llm_side_override_is_no_part_of_the_identity_of_a_run_without_an_e4srec(tmp_path):
    """A comparison on another backbone (--llm_path, --llm_num_layers, ...) reuses the same seed's
    SASRec, GRU4Rec and S3Rec records; its E4SRec and LLMD4Rec runs are its own."""
    def fingerprints(overrides):
        comparison = Comparison("toy", [], overrides, 1, select_methods("SASRec,E4SRec,LLMD4Rec,GRU4Rec,S3Rec", False),
                                tmp_path)
        for method in comparison.methods:  # a finished base's record fingerprint enters its dependants'
            spec = comparison.spec(method, 2020)
            comparison.records[(method.name, 2020)] = {"fingerprint": spec["fingerprint"], "checkpoint": None}
        return {name: record["fingerprint"] for (name, _), record in comparison.records.items()}

    tiny = fingerprints([])
    smollm2 = fingerprints(["--llm_path=smollm2-135m", "--llm_num_layers=2", "--llm_init=random"])
    assert {name for name in tiny if tiny[name] == smollm2[name]} == {"SASRec", "GRU4Rec", "S3Rec"}
    tuned = fingerprints(["--learning_rate=0.01"])  # a key the CRMs read too
    assert not {name for name in tiny if tiny[name] == tuned[name]}


def test_the_llm_side_keys_are_the_llm_sides_own():
    """Every key the CRMs' identity leaves out is declared by E4SRec's yaml and by neither SASRecD's
    nor the plugin-wide one: a key the CRMs read cannot be left out by mistake."""
    import yaml

    from recbole_llmd4rec.config import PROPERTIES_DIR
    from recbole_llmd4rec.experiments.methods import LLM_SIDE_KEYS

    def keys(name):
        return set(yaml.safe_load((PROPERTIES_DIR / name).read_text()))

    assert set(LLM_SIDE_KEYS) <= keys("model/E4SRec.yaml")
    assert not set(LLM_SIDE_KEYS) & (keys("model/SASRecD.yaml") | keys("overall.yaml"))


def test_the_fingerprint_reads_yaml_values_not_their_text_or_place(tmp_path):
    """A finished run stays reusable when a config file only gains a comment or moves (another
    checkout, a fresh machine); a changed value retrains; an unreadable file is one error line."""
    def sasrec_fingerprint(config_file):
        comparison = Comparison("toy", [str(config_file)], [], 1, select_methods("SASRec", False), tmp_path)
        return comparison.spec(comparison.methods[0], 2020)["fingerprint"]

    original = tmp_path / "mine.yaml"
    original.write_text("learning_rate: 0.001\n")
    moved = tmp_path / "elsewhere" / "copy.yaml"
    moved.parent.mkdir()
    moved.write_text("# tuned on the valid split\nlearning_rate: 0.001   # (float) Adam\n")
    changed = tmp_path / "changed.yaml"
    changed.write_text("learning_rate: 0.002\n")
    assert sasrec_fingerprint(moved) == sasrec_fingerprint(original)
    assert sasrec_fingerprint(changed) != sasrec_fingerprint(original)
    with pytest.raises(LLMD4RecError, match=r"^cannot read .*missing\.yaml \(FileNotFoundError\)"):
        sasrec_fingerprint(tmp_path / "missing.yaml")
    malformed = tmp_path / "malformed.yaml"
    malformed.write_text("learning_rate: [0.001\n")
    with pytest.raises(LLMD4RecError, match=r"^cannot read .*malformed\.yaml \(\w*Error\)"):
        sasrec_fingerprint(malformed)


def test_a_moved_comparison_keeps_its_runs_and_trains_a_gone_base_again(finished, monkeypatch, tmp_path):
    """Records name their model files relative to the folder, so a copied folder (another
    machine) reuses every finished run; a base whose file did not come along is trained again,
    from the same seed, before a method that starts from it, and tests as its record says."""
    finished_out, (dataset, files, overrides), _ = finished
    out = tmp_path / "elsewhere"
    shutil.copytree(finished_out, out, ignore=shutil.ignore_patterns("llm_cache", "LLMD4Rec_no_*", "DLLM2Rec*"))
    sasrec = json.loads((out / "SASRec" / "seed2020.json").read_text())
    (out / sasrec["checkpoint"]).unlink()
    messages = []
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    Comparison(dataset, files, overrides, 1, select_methods("SASRec,E4SRec,DLLM2Rec", False), out).run(
        log=messages.append)
    # the gone base first, before any run that needs it: it is what survives the next interruption
    assert messages == ["compare: SASRec, seed 2020: its model file is gone; training it again for DLLM2Rec",
                        "compare: SASRec, seed 2020: reused " + str(out / "SASRec" / "seed2020.json"),
                        "compare: E4SRec, seed 2020: reused " + str(out / "E4SRec" / "seed2020.json"),
                        "compare: DLLM2Rec, seed 2020 ..."]
    again = json.loads((out / "SASRec" / "seed2020.json").read_text())
    assert again["rows"] == sasrec["rows"] and (out / again["checkpoint"]).is_file()
    dllm2rec = json.loads((out / "DLLM2Rec" / "seed2020.json").read_text())
    assert dllm2rec["rows"] == json.loads((finished_out / "DLLM2Rec" / "seed2020.json").read_text())["rows"]


def test_what_git_keeps_of_a_comparison_trains_no_base_again(finished, monkeypatch, tmp_path):
    """benchmarks/results/.gitignore keeps the records, the tables and the files kept beside the
    records, not the run folders: a fresh clone reuses every finished run and trains no base again."""
    import subprocess

    from conftest import REPO

    finished_out, (dataset, files, overrides), _ = finished
    repo = tmp_path / "clone"
    shutil.copytree(finished_out, repo / "compare-tiny", ignore=shutil.ignore_patterns("llm_cache", "LLMD4Rec_no_*"))
    shutil.copy(REPO / "benchmarks" / "results" / ".gitignore", repo / ".gitignore")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    kept = subprocess.run(["git", "-C", str(repo), "ls-files", "--others", "--exclude-standard", "compare-tiny"],
                          check=True, capture_output=True, text=True).stdout.split()
    assert "compare-tiny/SASRec/seed2020.pth" in kept and "compare-tiny/LLMD4Rec/seed2020.round1.pth" in kept
    assert not any("/seed2020/" in path for path in kept)  # no run folder
    out = tmp_path / "fresh"
    for path in kept:
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(repo / path, out / path)
    out = out / "compare-tiny"
    monkeypatch.setattr(Comparison, "_run_child", lambda self, spec: pytest.fail(f"{spec['method']} launched"))
    methods = select_methods("SASRec,E4SRec,DLLM2Rec,LLMD4Rec,LEADER,LLMD4Rec_no_embedding_update", False)
    comparison = Comparison(dataset, files, overrides, 1, methods, out)
    states = {name: state for name, _, state in comparison.status()}  # status also reads the finished records
    assert states == {"SASRec": "finished", "E4SRec": "finished", "DLLM2Rec": "finished", "LLMD4Rec": "finished",
                      "LEADER": "to train", "LLMD4Rec_no_embedding_update": "to train"}
    ablation = next(m for m in methods if m.name == "LLMD4Rec_no_embedding_update")
    assert comparison.spec(ablation, 2020)["checkpoints"]["start_state"] == str(out / "LLMD4Rec" / "seed2020.round1.pth")
    # a record from before round-1 states were kept (Beauty's LLMD4Rec seed 2020): the ablation trains round 1 too
    (out / "LLMD4Rec" / "seed2020.round1.pth").unlink()
    states = {name: state for name, _, state in comparison.status()}
    assert states["LLMD4Rec_no_embedding_update"] == ("to train, with its own round 1 "
                                                      "(LLMD4Rec's round-1 state is not kept)")


def test_a_record_names_its_model_file_relative_to_the_folder_unless_it_lies_outside(tmp_path):
    from recbole_llmd4rec.experiments.child import record_path

    out = tmp_path / "compare"
    assert record_path(out / "SASRec" / "seed2020" / "sasrec.pth", str(out)) == "SASRec/seed2020/sasrec.pth"
    outside = tmp_path / "compare-other" / "sasrec.pth"  # a sibling whose name starts like the folder's
    assert record_path(outside, str(out)) == str(outside)
    comparison = Comparison("toy", [], [], 1, [], out)
    comparison.records[("SASRec", 2020)] = {"checkpoint": "SASRec/seed2020/sasrec.pth"}
    comparison.records[("E4SRec", 2020)] = {"checkpoint": str(outside)}
    assert comparison.checkpoint("SASRec", 2020) == out / "SASRec" / "seed2020" / "sasrec.pth"
    assert comparison.checkpoint("E4SRec", 2020) == outside


def test_the_protocol_for_data_sets_without_a_yaml_counts_only_where_it_is_read(tmp_path, monkeypatch):
    """Finished runs on a data set with its own yaml (Beauty, ml-100k) keep their fingerprint
    whatever converted.yaml says; runs on a data set that reads it retrain when it changes."""
    from recbole_llmd4rec import config as config_module

    dataset_configs = tmp_path / "dataset_configs"
    shutil.copytree(config_module.DATASET_CONFIG_DIR, dataset_configs)
    monkeypatch.setattr(config_module, "DATASET_CONFIG_DIR", dataset_configs)

    def sasrec_fingerprint(dataset):
        comparison = Comparison(dataset, [], [], 1, select_methods("SASRec", False), tmp_path)
        return comparison.spec(comparison.methods[0], 2020)["fingerprint"]

    before = {dataset: sasrec_fingerprint(dataset) for dataset in ("beauty", "mine")}
    converted = dataset_configs / config_module.CONVERTED_DATASET_CONFIG
    converted.write_text(converted.read_text().replace("MAX_ITEM_LIST_LENGTH: 50", "MAX_ITEM_LIST_LENGTH: 20"))
    assert sasrec_fingerprint("beauty") == before["beauty"]
    assert sasrec_fingerprint("mine") != before["mine"]


@pytest.mark.parametrize("override", ["--mutual_rounds=3", "--distiller=leader", "--checkpoint_dir=x", "--seed=7"])
def test_a_key_each_run_sets_itself_is_refused(tmp_path, override):
    key = override[2:].split("=")[0]
    with pytest.raises(LLMD4RecError, match=f"^--{key} cannot go to a comparison"):
        compare("tiny", [str(TINY_YAML)], [override], seeds=1, methods="SASRec", out_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_a_compare_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "runs").write_text("")
    with pytest.raises(LLMD4RecError, match="--compare_dir .*runs is a file: name a folder"):
        compare("tiny", [str(TINY_YAML)], [], seeds=1, methods="SASRec", out_dir=tmp_path / "runs")


def test_the_default_folder_names_the_data_set_and_the_crm_loss(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for overrides, folder in (([], "compare-toy-ce"), (["--crm_loss_type=bpr"], "compare-toy-bpr")):
        comparison = Comparison("toy", [], overrides, 1, select_methods("SASRec", False))
        assert comparison.out_dir == tmp_path / "saved" / folder
    (tmp_path / "saved" / "compare-toy-bpr").parent.mkdir()
    (tmp_path / "saved" / "compare-toy-bpr").write_text("")
    with pytest.raises(LLMD4RecError, match="--compare_dir saved/compare-toy-bpr is a file"):
        compare("toy", [], ["--crm_loss_type=BPR"], seeds=1, methods="SASRec", tables=True)


def test_a_run_that_fails_is_one_error_line_quoting_the_runs_own(tmp_path):
    overrides = [f"--data_path={TESTS / 'data'}", "--valid_metric=MRR@10"]  # refused in the child's config
    with pytest.raises(LLMD4RecError, match=r"^SASRec \(seed 2020\) failed: valid_metric 'MRR@10' is not among .*"
                                            r"\(whole log: .*run\.log\); finished runs are kept"):
        compare("tiny", [str(TINY_YAML)], overrides, seeds=1, methods="SASRec", out_dir=tmp_path / "runs")


def test_two_processes_share_a_comparison_each_run_trained_once(tmp_path, monkeypatch):
    """A run claimed by another live process is left to it: this one trains what does not wait for
    it, waits for the rest, and reads the other's record once it is written."""
    import subprocess
    import sys

    comparison = Comparison("toy", [], [], 2, select_methods("SASRec,E4SRec", False), tmp_path)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        claim = tmp_path / "SASRec" / "seed2021" / "claim"
        claim.parent.mkdir(parents=True)
        claim.write_text(f"{socket.gethostname()} {other.pid}")
        launched = []

        def train(self, spec):
            assert (Path(spec["run_dir"]) / "claim").read_text() == f"{socket.gethostname()} {os.getpid()}"
            launched.append((spec["method"], spec["seed"]))
            write_json_atomically(spec["result_file"], {**hand_made_record({spec["method"]: 0.1}),
                                                        "fingerprint": spec["fingerprint"], "checkpoint": None})

        def the_other_process_finishes(seconds):
            spec = comparison.spec(METHODS[0], 2021)
            write_json_atomically(spec["result_file"], {**hand_made_record({"SASRec": 0.2}),
                                                        "fingerprint": spec["fingerprint"], "checkpoint": None})
            claim.unlink()

        monkeypatch.setattr(Comparison, "_run_child", train)
        monkeypatch.setattr(time, "sleep", the_other_process_finishes)
        messages = []
        comparison.run(log=messages.append)
    finally:
        other.kill()
    assert launched == [("SASRec", 2020), ("E4SRec", 2020), ("E4SRec", 2021)]
    assert any("SASRec, seed 2021: trains in another process" in message for message in messages)
    assert comparison.records[("SASRec", 2021)]["rows"]["SASRec"]["hit@10"] == 0.2
    assert not list(tmp_path.glob("*/seed*/claim"))  # every claim released


def test_a_gone_base_trained_again_by_another_process_is_waited_for_not_trained_twice(tmp_path, monkeypatch):
    """Two processes of one comparison on a fresh checkout both find a base's model file gone: the
    one that claims it trains it again, the other waits and reads its record and file."""
    import subprocess
    import sys

    comparison = Comparison("toy", [], [], 1, select_methods("SASRec,E4SRec", False), tmp_path)
    spec = comparison.spec(METHODS[0], 2020)
    record = {**hand_made_record({"SASRec": 0.1}), "fingerprint": spec["fingerprint"],
              "checkpoint": "SASRec/seed2020.pth"}
    write_json_atomically(spec["result_file"], record)  # finished, its model file not here
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        claim = Path(spec["run_dir"]) / "claim"
        claim.parent.mkdir(parents=True)
        claim.write_text(f"{socket.gethostname()} {other.pid}")
        waits = []

        def the_other_process_trains_it_again(seconds):
            waits.append(seconds)
            if len(waits) == 2:  # it takes two looks
                torch.save({}, tmp_path / "SASRec" / "seed2020.pth")
                write_json_atomically(spec["result_file"], {**record, "train_seconds": {"SASRec": 7.0}})
                claim.unlink()

        monkeypatch.setattr(time, "sleep", the_other_process_trains_it_again)
        monkeypatch.setattr(Comparison, "_run_child", lambda self, spec: pytest.fail(f"{spec['method']} trained twice"))
        messages = []
        comparison.status()  # reads the finished record
        comparison._train_gone_bases_first(messages.append, poll_seconds=5)
    finally:
        other.kill()
    assert waits == [5, 5]
    assert messages[1:] == [f"compare: SASRec, seed 2020: trained again in another process "
                            f"({socket.gethostname()} {other.pid}); waiting for it"]
    assert comparison.records[("SASRec", 2020)]["train_seconds"] == {"SASRec": 7.0}
    assert not claim.exists()


def test_a_claim_whose_process_died_is_taken_over(tmp_path, monkeypatch):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    comparison = Comparison("toy", [], [], 1, select_methods("SASRec", False), tmp_path)
    claim = tmp_path / "SASRec" / "seed2020" / "claim"
    claim.parent.mkdir(parents=True)
    claim.write_text(f"{socket.gethostname()} {dead.stdout.strip()}")
    launched = []

    def train(self, spec):
        launched.append(spec["method"])
        write_json_atomically(spec["result_file"], {**hand_made_record({"SASRec": 0.1}),
                                                    "fingerprint": spec["fingerprint"]})

    monkeypatch.setattr(Comparison, "_run_child", train)
    comparison.run(log=lambda message: None)
    assert launched == ["SASRec"] and not claim.exists()


def test_a_folder_of_one_crm_loss_refuses_a_comparison_of_the_other(finished):
    out, (dataset, files, overrides), _ = finished
    with pytest.raises(LLMD4RecError, match="holds CE records .* trains its CRMs with BPR: give it a --compare_dir"):
        Comparison(dataset, files, [*overrides, "--crm_loss_type=BPR"], 1, select_methods("SASRec", False), out)
    with pytest.raises(LLMD4RecError, match="--loss_type cannot go to a comparison: --crm_loss_type=BPR or CE"):
        compare(dataset, files, [*overrides, "--loss_type=BPR"], seeds=1, methods="SASRec", out_dir=out)
    with pytest.raises(LLMD4RecError, match="--crm_loss_type must be one of BPR, CE for a comparison, got 'hinge'"):
        compare(dataset, files, [*overrides, "--crm_loss_type=hinge"], seeds=1, methods="SASRec", out_dir=out)


def test_a_records_identity_reads_the_data_sets_files_not_their_folder(tmp_path):
    for folder in ("here", "there"):
        shutil.copytree(TESTS / "data" / "tiny", tmp_path / folder / "tiny")
    sasrec = select_methods("SASRec", False)

    def identity(folder):
        comparison = Comparison("tiny", [str(TINY_YAML)], [f"--data_path={tmp_path / folder}"], 1, sasrec,
                                tmp_path / "compare")
        return comparison.spec(sasrec[0], 2020)["fingerprint"]

    assert identity("here") == identity("there")
    with open(tmp_path / "there" / "tiny" / "tiny.inter", "a", encoding="utf-8") as handle:
        handle.write("1\t2\t999\n")
    assert identity("here") != identity("there")
