"""Several processes, one run (RecBole's multi-process mode): DDP's step equals one process's step
over the same batch, a multi-process LLMD4Rec run killed in a phase resumes from its state and
evaluates a checkpoint exactly as one process does, and the errors that stop a run before any
process starts.

They run ``LLMD4REC_TEST_NPROC`` processes (default 2): gloo on CPUs, NCCL where a GPU is visible
(benchmarks/gpu_check.sh runs them with 1 on one GPU). The world size is given explicitly, so 1 is
a process group of one rank, not RecBole's single process.
"""

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from conftest import REPO, TESTS, TINY_YAML
from recbole_llmd4rec import run_llmd4rec
from recbole_llmd4rec.errors import ConfigError, LLMD4RecError

RANK_FAULTS = TESTS / "data" / "rank_faults"  # its sitecustomize kills a rank where the test says
NPROC = int(os.environ.get("LLMD4REC_TEST_NPROC", "2"))
PROCESSES = [f"--nproc={NPROC}", f"--world_size={NPROC}"]
STEP_BATCH = 64  # instances of the training step compared
# SGD (Adam's first step divides by the gradient's size, which float noise near 0 makes jumpy)
# and no dropout (a rank draws its own masks): the two steps then differ only by float rounding
STEP_SETTINGS = {"learner": "sgd", "learning_rate": 0.5, "hidden_dropout_prob": 0.0, "attn_dropout_prob": 0.0}


def free_port():
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


class OneBatch:
    """A train loader of one batch, for ``_train_epoch``."""

    shuffle = False

    def __init__(self, interaction):
        self.interaction = interaction

    def __iter__(self):
        yield self.interaction

    def __len__(self):
        return 1


def one_step(config, micro_batch_size, rank=0, world_size=1):
    """SASRecD after one training step (a PhaseTrainer's) on this rank's share of the first
    ``STEP_BATCH`` training instances; returns (initial, trained) state dicts."""
    from recbole.utils import init_seed

    from recbole_llmd4rec.model.sasrecd import SASRecD
    from recbole_llmd4rec.quick_start import load_dataset
    from recbole_llmd4rec.trainer import PhaseTrainer

    _, train_data, _, _ = load_dataset(config)
    init_seed(config["seed"], config["reproducibility"])
    model = SASRecD(config, train_data._dataset).to(config["device"])
    initial = {key: value.clone() for key, value in model.state_dict().items()}
    trainer = PhaseTrainer(config, model, micro_batch_size=micro_batch_size)
    share = STEP_BATCH // world_size
    batch = train_data._dataset[torch.arange(rank * share, (rank + 1) * share)]
    trainer._train_epoch(OneBatch(batch), 0)
    return initial, model.state_dict()


def step_config(workdir, **extra):
    from recbole_llmd4rec.config import Config

    return Config("SASRecD", "tiny", [str(TINY_YAML)], {"data_path": str(TESTS / "data"),
                                                         "checkpoint_dir": str(workdir / "saved"),
                                                         **STEP_SETTINGS, **extra}, check_keys=False)


MICRO_BATCH_SIZES = (None, 16)  # whole batches; micro batches (E4SRec's gradient accumulation)


def _rank_steps(local_rank, workdir, port):
    """One rank of the DDP steps (spawned): rank 0 saves the trained weights."""
    config = step_config(workdir, local_rank=local_rank, nproc=NPROC, world_size=NPROC, ip="localhost", port=port,
                         offset=0)
    for micro_batch_size in MICRO_BATCH_SIZES:
        _, trained = one_step(config, micro_batch_size, local_rank, world_size=NPROC)
        if local_rank == 0:
            torch.save(trained, workdir / f"ddp_step_{micro_batch_size}.pth")
    torch.distributed.destroy_process_group()


def test_a_ddp_step_over_two_halves_equals_one_step_over_the_batch(workdir):
    mp.spawn(_rank_steps, args=(workdir, free_port()), nprocs=NPROC, join=True)
    for micro_batch_size in MICRO_BATCH_SIZES:
        ddp = torch.load(workdir / f"ddp_step_{micro_batch_size}.pth", weights_only=True)
        initial, single = one_step(step_config(workdir), micro_batch_size)
        assert any(not torch.equal(initial[key], single[key]) for key in single)  # the step moved the weights
        for key in single:
            torch.testing.assert_close(ddp[key], single[key], rtol=1e-5, atol=1e-6,
                                       msg=f"{key}, micro batches of {micro_batch_size}")


@pytest.mark.parametrize("users, world_size", [(7, 2), (7, 3), (8, 2), (2, 3)])
def test_every_ranks_evaluation_rows_come_back_in_order_each_user_once(users, world_size):
    from torch.utils.data.distributed import DistributedSampler

    from recbole_llmd4rec.trainer.ranks import in_dataset_order

    # what RecBole's evaluation loaders give each rank: torch's sampler, padded with the first users
    parts = [torch.tensor(list(DistributedSampler(range(users), num_replicas=world_size, rank=rank, shuffle=False)))
             for rank in range(world_size)]
    assert torch.equal(in_dataset_order(parts, users), torch.arange(users))


def test_two_processes_resume_a_killed_llmd4rec_run_and_evaluate_as_one(tiny, workdir, monkeypatch):
    from recbole.trainer import Trainer

    from recbole_llmd4rec.quick_start import load_data_and_model

    config_dict = {**tiny["config_dict"], "mutual_rounds": 1, "crm": {"epochs": 2},
                   "llm": {"train_batch_size": 64, "micro_batch_size": 32}}
    trained = workdir / "trained.txt"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(RANK_FAULTS), str(REPO)]))
    monkeypatch.setenv("LLMD4REC_TEST_TRAINED", str(trained))
    # rank 0 dies right after it saved the CRM phase's state after its first epoch
    monkeypatch.setenv("LLMD4REC_TEST_KILL", "0:round1_crm:0")
    with pytest.raises(LLMD4RecError, match=r"^rank 0 was killed \(SIGKILL\).*rerun the same command to resume"):
        run_llmd4rec("LLMD4Rec", "tiny", tiny["config_file_list"], config_dict,
                     cmd_args=[*PROCESSES, f"--port={free_port()}"])
    (run_dir,) = (workdir / "saved").glob("LLMD4Rec-tiny-*")
    assert torch.load(run_dir / "state.pth")["finished_steps"] == ["round0_crm", "round1_llm"]
    assert torch.load(run_dir / "round1_crm_training.pth")["epoch"] == 0
    assert trained.read_text().splitlines() == [
        "step round0_crm", "epoch round0_crm 0", "epoch round0_crm 1", "step round1_llm", "epoch round1_llm 0",
        "step round1_crm", "epoch round1_crm 0"]

    monkeypatch.delenv("LLMD4REC_TEST_KILL")
    trained.unlink()
    result = run_llmd4rec("LLMD4Rec", "tiny", tiny["config_file_list"], config_dict,
                          cmd_args=[*PROCESSES, f"--port={free_port()}"])
    # the finished steps are not trained again, and the CRM phase goes on from its saved epoch
    assert trained.read_text().splitlines() == ["step round1_crm", "epoch round1_crm 1"]
    assert torch.load(run_dir / "state.pth")["finished_steps"] == ["round0_crm", "round1_llm", "round1_crm"]
    crm_phase = next(phase for phase in json.loads((run_dir / "phases.json").read_text())
                     if phase["phase"] == "round1_crm")
    assert [epoch for epoch, _ in crm_phase["valid_curve"]] == [0, 1]  # epoch 0's score kept from the killed run
    assert not list(run_dir.glob("*rank1*")) and len(list((workdir / "log" / "LLMD4Rec").iterdir())) == 2

    # the distilled SASRec, evaluated by one process, gives what the two processes reported
    config, model, _, _, _, test_data = load_data_and_model(result["saved_model_file"])
    assert config["single_spec"] and "world_size" not in config
    assert dict(Trainer(config, model).evaluate(test_data, load_best_model=False)) == dict(result["test_result"])


def test_a_port_in_use_is_refused_before_any_process_starts(tiny):
    with socket.socket() as holder:
        holder.bind(("localhost", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(LLMD4RecError, match=rf"port {port} on localhost is not free.*--port"):
            run_llmd4rec("SASRecD", "tiny", tiny["config_file_list"], tiny["config_dict"],
                         cmd_args=[*PROCESSES, f"--port={port}"])


def test_more_processes_than_gpus_is_refused(tiny, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"nproc=2 starts one process per GPU, but 1 GPU\(s\)"):
        run_llmd4rec("SASRecD", "tiny", tiny["config_file_list"], tiny["config_dict"],
                     cmd_args=["--nproc=2", "--gpu_id=0,1"])


@pytest.mark.parametrize("args, message", [
    (["--nproc=2", "--world_size=3", "--offset=2"], r"ranks 2\.\.3 .* within the run's 0\.\.2"),
    (["--nproc=0", "--world_size=2"], r"nproc must be >= 1"),
])
def test_a_layout_that_does_not_add_up_is_refused(tiny, args, message):
    with pytest.raises(ConfigError, match=message):
        run_llmd4rec("SASRecD", "tiny", tiny["config_file_list"], tiny["config_dict"], cmd_args=args)


def test_a_comparison_trains_every_run_on_nproc_processes_and_reads_the_port_as_no_setting(tmp_path):
    from recbole_llmd4rec.experiments.methods import select_methods
    from recbole_llmd4rec.experiments.runner import FIRST_SEED, Comparison, identity_overrides

    (sasrec,) = select_methods("SASRec", ablation=False)
    comparison = Comparison("tiny", [str(TINY_YAML)], ["--nproc=2", "--port=29999"], 1, [sasrec], tmp_path)
    assert {"--nproc=2", "--port=29999"} <= set(comparison.spec(sasrec, FIRST_SEED)["overrides"])  # what the run gets
    assert identity_overrides("tiny", ["--nproc=2", "--port=29999", "--epochs=1"]) == ["--nproc=2", "--epochs=1"]
    # one process is one process, with or without --nproc=1: its records stay
    assert identity_overrides("tiny", ["--nproc=1", "--process_group_timeout=5"]) == []


def test_a_comparison_refuses_ranks_on_other_machines(tmp_path):
    from recbole_llmd4rec.experiments.runner import compare

    with pytest.raises(LLMD4RecError, match=r"--world_size cannot go to a comparison.*--nproc=N"):
        compare("tiny", [str(TINY_YAML)], ["--nproc=2", "--world_size=4"], out_dir=tmp_path, status=True)
