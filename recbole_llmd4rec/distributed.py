"""Several processes, one run: RecBole's multi-process mode on CPUs (gloo) as on GPUs (NCCL).

RecBole 1.2.1 runs one process per rank (``nproc`` on this machine, ``world_size`` in all,
``offset`` the rank of this machine's first process, ``ip``/``port`` where rank 0 listens).
What the plugin adds lives here: the process group of a rank (gloo on CPUs, NCCL on GPUs),
which rank writes files, and the few collectives the trainers and the teacher store use. In one
process every helper is a no-op, so a single-process run takes exactly the path it took before.
"""

import datetime
import socket

import torch
import torch.distributed as dist

from recbole_llmd4rec.errors import ConfigError, LLMD4RecError

# RecBole's multi-process keys and the defaults of its ``run``; ``local_rank`` is set per process.
LAUNCH_DEFAULTS = {"nproc": 1, "world_size": -1, "ip": "localhost", "port": 5678, "offset": 0}
RESUME_HINT = "rerun the same command to resume from the last saved state"


def several(config):
    """Whether ``config`` is one rank of a multi-process run."""
    return not config["single_spec"]


def global_rank(config):
    """This process's rank among all machines' (RecBole numbers them local_rank + offset)."""
    return config["local_rank"] + (config["offset"] or 0) if several(config) else 0


def writes_files(config):
    """Only the first rank of the whole run writes files: checkpoints, states, tables. RecBole's
    own rule (local_rank 0) would let the first process of every machine write."""
    return global_rank(config) == 0


def uses_gpu(config_dict):
    """RecBole's device rule: a GPU when ``gpu_id`` names one and CUDA is there."""
    return bool(str(config_dict["gpu_id"])) and torch.cuda.is_available()


def check_gpus(nproc, gpu_id):
    """One GPU per process of this machine: refuse more processes than visible GPUs."""
    visible = torch.cuda.device_count()
    named = len([part for part in str(gpu_id).split(",") if part.strip()])
    if nproc > min(visible, named):
        raise ConfigError(
            f"nproc={nproc} starts one process per GPU, but {min(visible, named)} GPU(s) are usable here "
            f"(gpu_id {gpu_id!r}, {visible} visible): lower --nproc, or list more GPUs with --gpu_id=0,1,..."
        )


def join_process_group(config_dict):
    """Join the run's process group as rank ``local_rank + offset`` (Config does this once per process)."""
    rank = config_dict["local_rank"] + config_dict["offset"]
    address = f"tcp://{config_dict['ip']}:{config_dict['port']}"
    if dist.is_initialized():  # a part's config (LLMD4Rec's crm/llm) in a process that already joined
        return
    try:
        dist.init_process_group(
            backend="nccl" if uses_gpu(config_dict) else "gloo", init_method=address, rank=rank,
            world_size=config_dict["world_size"],
            # a rank that never comes, or one that dies on another machine, ends the run instead of hanging it
            timeout=datetime.timedelta(minutes=config_dict["process_group_timeout"]),
        )
    except (RuntimeError, ValueError) as exc:  # torch's DistNetworkError / DistStoreError are RuntimeErrors
        raise LLMD4RecError(
            f"rank {rank} cannot join the process group at {address} ({str(exc).splitlines()[0]}): check --ip and "
            f"--port (rank 0's machine and a free port), and that all {config_dict['world_size']} ranks start"
        ) from None


def check_port_free(ip, port):
    """Rank 0 listens on ``ip:port``: refuse a port another program holds, before any process starts."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((ip, port))
        except OSError as exc:
            raise LLMD4RecError(
                f"port {port} on {ip} is not free ({exc.strerror}): pass --port with a free port (e.g. another "
                f"run's process group holds it)"
            ) from None


def barrier(config):
    """Every rank waits here: after rank 0 wrote a file the others then read."""
    if several(config):
        dist.barrier()


def from_rank0(value, config):
    """Rank 0's ``value`` on every rank (a decision all must take alike, a name one rank chose)."""
    if not several(config):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def from_every_rank(value, config):
    """Every rank's ``value``, in rank order (a list of one in a single process)."""
    if not several(config):
        return [value]
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def rank0_sees(path, config):
    """Whether rank 0 finds the file ``path``; a rank that disagrees cannot follow rank 0, so it says
    why: every rank reads the files rank 0 writes, from one folder all of them see."""
    here = path.is_file()
    there = from_rank0(here, config)
    if here != there:
        raise LLMD4RecError(
            f"rank {global_rank(config)} {'does not see' if there else 'sees'} {path}, which rank 0 "
            f"{'reads' if there else 'does not see'}: checkpoint_dir must be one folder every rank reads "
            "(on several machines, a shared file system)"
        )
    return there


def as_one_process(config):
    """A rank's config made a single-process one, as RecBole's single process would have it: for a
    checkpoint read back or a model exported after a multi-process run."""
    final = config.final_config_dict
    if final.get("single_spec", True):
        return config
    for key in (*LAUNCH_DEFAULTS, "local_rank"):
        final.pop(key, None)
    final["single_spec"] = True
    final["local_rank"] = 0
    final["device"] = torch.device("cuda") if final["device"].type == "cuda" else torch.device("cpu")
    return config
