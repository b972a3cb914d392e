"""What a comparison compares: the methods in run order, the rows each gives, the runs each
starts from, and the pairs of rows the tables judge against each other."""

from dataclasses import dataclass, field
from typing import Optional

from recbole_llmd4rec.errors import LLMD4RecError


@dataclass(frozen=True)
class Method:
    """One trained model (or one LLMD4Rec run) and the table rows it gives.

    ``rows``: (row name, which model of an LLMD4Rec run it reports: "CRM", "LLM", or None
    for a plain RecBole run). ``starts_from``: earlier methods of the same seed it depends on;
    a trained method starts from their checkpoints ("SASRec" -> crm_checkpoint, "E4SRec" ->
    llm_checkpoint). ``first_round_of``: instead of training, read the rows from round 1 of
    this earlier method's LLMD4Rec run (T_max = 1 is that run's first round step for step, as
    each step is seeded by its position); it must be in ``starts_from``. ``round1_of``: start
    from the state that earlier LLMD4Rec run kept after round 1 (``start_state``), for a run
    whose settings differ from it only in what later rounds read; it must be in ``starts_from``.
    """

    name: str
    model: str
    settings: dict = field(default_factory=dict)
    starts_from: tuple = ()
    rows: tuple = ()
    latency: tuple = ()  # rows whose deployable model's per-user latency is measured
    first_round_of: Optional[str] = None
    round1_of: Optional[str] = None

    def __post_init__(self):
        for run in (self.first_round_of, self.round1_of):
            assert run is None or run in self.starts_from

    def llmd4rec_bases(self):
        return [run for run in (self.first_round_of, self.round1_of) if run]

    def row_names(self):
        return [row for row, _ in self.rows] or [self.name]


def _ablation_rows(label):
    return (f"LLMD4Rec_C {label}", "CRM"), (f"LLMD4Rec_L {label}", "LLM")


ONE_WAY = {"mutual_rounds": 1}
# The no-teacher control: the CRM phases of an LLM -> CRM run from the same seed's SASRec, with
# the teacher's weight at 0 (no teacher store is built), so extra epochs are not read as distillation.
NO_TEACHER = {"directions": "llm_to_crm", "distill_beta": 0.0}
# S3Rec's pre-training has no early stopping, and RecBole's 500 epochs are far beyond a CPU's
# budget per seed. The comparison pre-trains for this many.
S3REC_PRETRAIN_EPOCHS = 10
# The paper runs S3Rec with Masked Item Prediction only (Sec. 5.1.2): the other objectives' weights at 0.
S3REC_MIP_ONLY = {"aap_weight": 0.0, "map_weight": 0.0, "sp_weight": 0.0}
METHODS = [  # in run order; a method's bases come before it
    Method("SASRec", "SASRecD", latency=("SASRec",)),
    Method("E4SRec", "E4SRec", starts_from=("SASRec",), latency=("E4SRec",)),
    Method("LLMD4Rec", "LLMD4Rec", {}, ("SASRec",), (("LLMD4Rec_C", "CRM"), ("LLMD4Rec_L", "LLM")),
           latency=("LLMD4Rec_C",)),
    # as many CRM phases as LLMD4Rec_C's (mutual_rounds), and its first one alone for the one-way rows
    Method("SASRec_continued", "LLMD4Rec", NO_TEACHER, ("SASRec", "E4SRec"), (("SASRec_continued", "CRM"),)),
    Method("SASRec_continued_1", "LLMD4Rec", {}, ("SASRec_continued",), (("SASRec_continued_1", "CRM"),),
           first_round_of="SASRec_continued"),
    Method("KD_LLM_to_CRM", "LLMD4Rec", {**ONE_WAY, "directions": "llm_to_crm", "sample_weight": False},
           ("SASRec", "E4SRec"), (("KD LLM->CRM", "CRM"),)),
    Method("DLLM2Rec", "LLMD4Rec", {**ONE_WAY, "directions": "llm_to_crm", "distiller": "dllm2rec"},
           ("SASRec", "E4SRec"), (("DLLM2Rec", "CRM"),)),
    Method("LEADER", "LLMD4Rec", {**ONE_WAY, "directions": "llm_to_crm", "distiller": "leader"},
           ("SASRec", "E4SRec"), (("LEADER", "CRM"),)),
    Method("KD_CRM_to_LLM", "LLMD4Rec", {**ONE_WAY, "directions": "crm_to_llm", "sample_weight": False},
           ("SASRec",), (("KD CRM->LLM", "LLM"),)),
    # LLM-SRec: one LLM phase from the seed's SASRec, which teaches E4SRec through its user states
    Method("LLM-SRec", "LLMD4Rec", {**ONE_WAY, "directions": "crm_to_llm", "distiller": "llmsrec"},
           ("SASRec",), (("LLM-SRec", "LLM"),)),
    Method("GRU4Rec", "GRU4Rec"),
    Method("S3Rec", "S3Rec", {"pretrain_epochs": S3REC_PRETRAIN_EPOCHS, **S3REC_MIP_ONLY}),
]
OPT_IN = [Method("SASRec_RecBole", "SASRec", latency=("SASRec_RecBole",))]  # only when named in --methods
ABLATIONS = [
    Method("LLMD4Rec_no_sample_weight", "LLMD4Rec", {"sample_weight": False}, ("SASRec",), _ablation_rows("w/o w")),
    # Without the update, round 1 is LLMD4Rec's round 1 (the update starts in round 2).
    Method("LLMD4Rec_no_embedding_update", "LLMD4Rec", {"embedding_update": False}, ("SASRec", "LLMD4Rec"),
           _ablation_rows("w/o eu"), round1_of="LLMD4Rec"),
    Method("LLMD4Rec_no_loop", "LLMD4Rec", {}, ("LLMD4Rec",), _ablation_rows("w/o loop"), first_round_of="LLMD4Rec"),
]
ALL_METHODS = METHODS + ABLATIONS + OPT_IN  # every name --methods accepts
# What later runs of a seed read from a finished run is kept beside its record, outside the run
# folder: the model file of a base (<method>/seed<k>.pth) and the state after round 1 of an
# LLMD4Rec run that an ablation starts from (<method>/seed<k>.round1.pth). They are a few MB
# each, so git keeps them with the records (benchmarks/results/.gitignore) and a fresh machine
# does not train those bases again.
MODEL_BASES = {base for m in ALL_METHODS for base in m.starts_from if base not in m.llmd4rec_bases()}
ROUND1_BASES = {m.round1_of for m in ALL_METHODS if m.round1_of}
KEPT_MODEL_SUFFIX, KEPT_ROUND1_SUFFIX = ".pth", ".round1.pth"
# Overrides reach every run, so these would erase what tells the LLMD4Rec runs apart, or where each
# run keeps its files and which seed it has: refused.
PER_RUN_KEYS = (*dict.fromkeys(key for m in ALL_METHODS if m.model == "LLMD4Rec" for key in m.settings),
                "crm_checkpoint", "llm_checkpoint", "start_state", "checkpoint_dir", "seed")
# (row, the backbone it improves; for LLM-SRec, E4SRec alone is also its no-teacher control)
IMPROVEMENTS = (("LLMD4Rec_C", "SASRec"), ("LLMD4Rec_L", "E4SRec"), ("LLM-SRec", "E4SRec"))
# (LLM -> CRM row, its no-teacher control: the same CRM phases without the teacher)
CONTROLS = (("LLMD4Rec_C", "SASRec_continued"), ("KD LLM->CRM", "SASRec_continued_1"),
            ("DLLM2Rec", "SASRec_continued_1"), ("LEADER", "SASRec_continued_1"))
# (ablation row, the full LLMD4Rec row it takes a component from)
FULL_ROW = {part: row for row, part in next(m for m in METHODS if m.name == "LLMD4Rec").rows}
ABLATION_PAIRS = tuple((row, FULL_ROW[part]) for part in FULL_ROW for m in ABLATIONS
                       for row, row_part in m.rows if row_part == part)
ABLATION_ROWS = {row for row, _ in ABLATION_PAIRS}
# (row, row it should beat): the questions the comparison answers, each judged against the seeds' spread
SPREAD_CHECKS = (*IMPROVEMENTS, *CONTROLS, ("LLMD4Rec_C", "KD LLM->CRM"), ("LLMD4Rec_C", "DLLM2Rec"), ("LLMD4Rec_C", "LEADER"),
                 ("LLMD4Rec_L", "KD CRM->LLM"), ("LLMD4Rec_L", "LLM-SRec"),
                 *((full, row) for row, full in ABLATION_PAIRS))
CHANGES = (*IMPROVEMENTS, *CONTROLS, *ABLATION_PAIRS)  # (row, base): the table gives the row's change against its base
CHANGE_BASES = tuple(dict.fromkeys(base for _, base in CHANGES))


# Keys only the LLM side reads (E4SRec's backbone, LoRA and prompt): an override of one is no part of
# the identity of a run that builds no E4SRec (SASRec, GRU4Rec, S3Rec), so a comparison on another
# backbone reuses the same seed's SASRec records and starts its E4SRec from the same SASRec.
LLM_SIDE_KEYS = ("llm_path", "llm_gguf_file", "llm_num_layers", "llm_init", "llm_dtype", "llm_attention",
                 "llm_cache_dir", "tiny_llm", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules",
                 "instruction", "response_header", "share_prompt")
LLM_SIDE_MODELS = ("E4SRec", "LLMD4Rec")  # the models that build an E4SRec and read those keys

CRM_LOSS_KEY = "crm_loss_type"
DEFAULT_CRM_LOSS = "CE"  # RecBole's SASRec default; --crm_loss_type=BPR is the paper's regime
CRM_LOSS_LABELS = {"BPR": "BPR on one uniformly sampled negative (the paper's regime)",
                   "CE": "cross-entropy over all items (the strong regime)"}
# What --crm_loss_type sets for every CRM of a comparison (E4SRec keeps CE): refused as overrides.
REGIME_KEYS = ("loss_type", "train_neg_sample_args")


def with_crm_loss(overrides):
    """``(regime, overrides)``: the comparison's CRM loss (``--crm_loss_type``, default CE,
    upper case) and the overrides with it named once, so every run and record carries it."""
    given = [arg.partition("=")[2] for arg in overrides if arg.startswith(f"--{CRM_LOSS_KEY}=")]
    regime = (given[-1] if given else DEFAULT_CRM_LOSS).upper()
    if regime not in CRM_LOSS_LABELS:
        raise LLMD4RecError(f"--{CRM_LOSS_KEY} must be one of {', '.join(CRM_LOSS_LABELS)} for a comparison, "
                            f"got {given[-1]!r}")
    rest = [arg for arg in overrides if not arg.startswith(f"--{CRM_LOSS_KEY}=")]
    return regime, [*rest, f"--{CRM_LOSS_KEY}={regime}"]


def select_methods(names, ablation):
    """``names``: comma-separated method names (default: all); ``ablation`` adds the ablations."""
    if names:
        wanted = [name.strip() for name in names.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in {m.name for m in ALL_METHODS}]
        if unknown:
            raise LLMD4RecError(f"unknown method {unknown[0]!r}; choose from "
                             f"{', '.join(m.name for m in ALL_METHODS)}")
    else:
        wanted = [m.name for m in METHODS]
    if ablation:
        wanted += [m.name for m in ABLATIONS]
    # a row read from, or started from, another run's first round needs that run
    wanted += [base for m in ALL_METHODS if m.name in wanted for base in m.llmd4rec_bases()]
    return [m for m in ALL_METHODS if m.name in wanted]
