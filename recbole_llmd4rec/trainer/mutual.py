"""Algorithm 1 of LLMD4Rec (arXiv 2505.18120): CRM pretraining, then rounds of embedding update,
LLM phase with the CRM as teacher and CRM phase with the LLM as teacher, each phase to early
stopping; the resume machinery is ``run_state.RunStateMixin``."""

import time
from logging import getLogger
from pathlib import Path

from recbole.data.utils import create_samplers, get_dataloader
from recbole.utils import calculate_valid_score, dict2str, set_color

from recbole_llmd4rec.atomic import load_checkpoint, write_json_atomically
from recbole_llmd4rec.config import require_int
from recbole_llmd4rec.distributed import barrier, global_rank, rank0_sees, several, writes_files
from recbole_llmd4rec.distillers import CRM_TO_LLM_DISTILLERS, ONE_WAY_DISTILLERS, make_distiller
from recbole_llmd4rec.errors import ConfigError, LLMD4RecError
from recbole_llmd4rec.export import export_item_embeddings, export_sasrec_checkpoint
from recbole_llmd4rec.report import RoundReport
from recbole_llmd4rec.teacher import TeacherStore, add_instance_ids
from recbole_llmd4rec.trainer.phase import PhaseTrainer, TrainingLossIsNaN, phase_record, refuse_scaler_with_micro_batches
from recbole_llmd4rec.trainer.ranks import DDPWrap, RankGatheringTrainer
from recbole_llmd4rec.trainer.run_state import PHASES_FILE, RunStateMixin, run_fingerprint

DIRECTIONS = ("both", "crm_to_llm", "llm_to_crm")  # who teaches whom (crm_to_llm: the CRM stays as pretrained)
TEACHER_STORES = ("full", "topk")  # what the KL reads of a teacher: every item, or its top K


class MutualDistillTrainer(RunStateMixin, DDPWrap):
    """Algorithm 1 of LLMD4Rec on an ``LLMD4Rec`` model (``crm``: SASRecD, ``llm``: E4SRec).

    Each phase trains its student to early stopping on the validation metric (RecBole's
    ``stopping_step``) and keeps its best trained epoch ("train until convergence"); with
    ``phase_start_is_candidate`` the weights the phase started from count as a candidate too,
    so a phase whose teacher does not help leaves its student as it was. Every phase's start
    score, validation curve and chosen epoch go to ``phases.json``. A phase whose distillation
    weight is 0 builds no teacher store: it is the no-teacher control of that phase.

    Every step below is one checkpointed unit: after it finishes, both models, the round
    table and the list of finished steps are written atomically to ``state.pth`` in the
    run's folder. Rerunning the same command resumes after the last finished step and,
    as every step starts from a seed of its own, ends with the same table. The state after
    each round t is kept as ``state_round<t>.pth``, with the settings that shaped it: a run
    whose settings differ only in what later rounds read (``FIRST_ROUND_READING``: more
    rounds, no embedding update) can start from it (``start_state``) instead of repeating
    rounds 0..t, and ends as it would have from scratch.
    """

    needs_test_data = True
    wraps_model = False  # each phase wraps the student it trains

    def __init__(self, config, model):
        super().__init__(config, model)
        self.logger = getLogger()
        self.device = config["device"]
        self.crm, self.llm = model.crm, model.llm
        self.crm_config, self.llm_config = model.crm_config, model.llm_config
        self.micro_batch_size = require_int(self.llm_config, "micro_batch_size", 1)
        refuse_scaler_with_micro_batches(self.llm_config)  # before round 0, not after it
        self.check_settings(config)
        self.run_dir = Path(config["checkpoint_dir"]) / (
            f"LLMD4Rec-{config['dataset']}-{run_fingerprint(config, self.crm_config, self.llm_config)}"
        )
        self.state_file = self.run_dir / "state.pth"
        self.report = RoundReport()
        self.finished_steps = []
        self.teacher_passes = {}  # phase name -> teacher forward batches (one pass per phase)
        self.llm_phase_record = (0.0, 0)  # (seconds, epochs) of the round's LLM phase, for its table rows
        self.phases = []  # phase_record of every finished phase, in training order
        self.saved_model_file = str(self.run_dir / "sasrec_distilled.pth")
        # on several processes their DDP wraps also start every rank from rank 0's two models
        self.crm_evaluator = RankGatheringTrainer(self.crm_config, self.crm)
        self.llm_evaluator = RankGatheringTrainer(self.llm_config, self.llm)

    @staticmethod
    def check_settings(config):
        """The trainer's own keys, refused before the data set loads (quick_start calls this first)."""
        require_int(config, "mutual_rounds", 1, " (paper: 2)")
        require_int(config, "teacher_batch_size", 1)
        if config["directions"] not in DIRECTIONS:
            raise ConfigError(f"directions must be one of {', '.join(DIRECTIONS)}; got {config['directions']!r}")
        if config["distiller"] in ONE_WAY_DISTILLERS and config["directions"] != "llm_to_crm":
            raise ConfigError(
                f"distiller {config['distiller']} distils the LLM into the CRM only: set directions: llm_to_crm"
            )
        if config["distiller"] in CRM_TO_LLM_DISTILLERS and config["directions"] != "crm_to_llm":
            raise ConfigError(
                f"distiller {config['distiller']} distils the CRM into the LLM only: set directions: crm_to_llm"
            )
        if config["teacher_store"] not in TEACHER_STORES:
            raise ConfigError(f"teacher_store must be one of {', '.join(TEACHER_STORES)}; "
                              f"got {config['teacher_store']!r}")
        if config["teacher_store"] == "topk":
            require_int(config, "teacher_topk", 1)
        memory = config["teacher_memory_gib"]
        if isinstance(memory, bool) or not isinstance(memory, (int, float)) or memory < 0:
            raise ConfigError(f"teacher_memory_gib must be a number >= 0 (GiB), got {memory!r}")
        for key in ("phase_start_is_candidate", "embedding_update"):
            if not isinstance(config[key], bool):
                raise ConfigError(f"{key} must be True or False, got {config[key]!r}")

    # ---- Algorithm 1 ------------------------------------------------------------------
    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False,
            callback_fn=None, test_data=None):
        if valid_data is None or test_data is None:
            raise LLMD4RecError("MutualDistillTrainer.fit needs valid_data and test_data")
        self.train_dataset, self.valid_data, self.test_data = train_data._dataset, valid_data, test_data
        self.show_progress = show_progress
        add_instance_ids(self.train_dataset)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._resume()
        config = self.config

        # Step 1: pretrain the CRM alone (or take crm_checkpoint), then evaluate it: round 0.
        self._run_step("round0_crm", self._pretrain_crm, ends_round=0)
        # Step 2 (initialise E4SRec from the CRM's item embeddings) happens in round 1's step 3a.
        for t in range(1, config["mutual_rounds"] + 1):
            # Step 3a: embedding update; step 3b: LLM phase with the frozen CRM as teacher.
            self._run_step(f"round{t}_llm", lambda t=t: self._llm_phase(t))
            # Step 3c: CRM phase with the frozen LLM as teacher; step 3d: evaluate both.
            self._run_step(f"round{t}_crm", lambda t=t: self._crm_phase(t), ends_round=t)

        # Step 4: keep both models.
        self._export()
        self.logger.info(set_color("LLMD4Rec rounds", "yellow") + "\n" + self.report.table())
        final_round = config["mutual_rounds"]
        best_valid_result = self.report.result(final_round, "CRM", "valid")
        return best_valid_result[config["valid_metric"].lower()], best_valid_result

    def _pretrain_crm(self):
        if self.config["crm_checkpoint"]:
            seconds, epochs = 0.0, 0  # loaded by LLMD4Rec from crm_checkpoint
        else:
            seconds, epochs = self._train_phase("round0_crm", self.crm, self.crm_config, teacher=None)
        self._evaluate_round(0, "CRM", seconds, epochs)

    def _llm_phase(self, t):
        directions = self.config["directions"]
        learns_from_crm = directions in ("both", "crm_to_llm")
        # llm_to_crm: E4SRec is trained once, on its own loss, to become the teacher (not at
        # all when llm_checkpoint gave a trained one); afterwards it stays as it is, E included.
        trains_alone = directions == "llm_to_crm" and t == 1 and not self.config["llm_checkpoint"]
        if (learns_from_crm or trains_alone) and (t == 1 or self.config["embedding_update"]):
            self.model.update_llm_item_embeddings()
        if learns_from_crm:
            # LLMD4Rec's KL (Eq. 3-5), or a CRM -> LLM baseline's own signal (LLM-SRec: the CRM's user states)
            distiller = self.config["distiller"] if self.config["distiller"] in CRM_TO_LLM_DISTILLERS else "llmd4rec"
            self.llm_phase_record = self._train_phase(f"round{t}_llm", self.llm, self.llm_config, teacher=self.crm,
                                                      distiller=distiller)
        elif trains_alone:
            self.llm_phase_record = self._train_phase(f"round{t}_llm", self.llm, self.llm_config, teacher=None)
        else:
            self.llm_phase_record = (0.0, 0)

    def _crm_phase(self, t):
        if self.config["directions"] in ("both", "llm_to_crm"):
            distiller = self.config["distiller"]
            if distiller == "dllm2rec":  # its embedding distillation reads the LLM's item vectors
                self.crm.set_teacher_item_embeddings(self.llm.item_representations())
            crm_record = self._train_phase(f"round{t}_crm", self.crm, self.crm_config, teacher=self.llm,
                                           distiller=distiller)
        else:
            crm_record = (0.0, 0)
        self._evaluate_round(t, "LLM", *self.llm_phase_record)
        self._evaluate_round(t, "CRM", *crm_record)

    # ---- one phase: a student trained to early stopping against a frozen teacher ----------
    def _train_phase(self, name, student, student_config, teacher, distiller="llmd4rec"):
        """Train ``student`` to early stopping, learning from ``teacher`` (or alone);
        returns (seconds, epochs). The teacher's store lives only as long as the phase."""
        started = time.time()
        train_loader = self._train_loader(student_config)
        best_file, training_file = self._phase_files(name)
        phase = PhaseTrainer(
            student_config, student,
            micro_batch_size=self.micro_batch_size if student is self.llm else None,
            saved_model_file=best_file, resume_file=training_file,
        )
        phase.clock_started = started
        phase.keeps_training_state = True  # until state.pth marks the step finished (_run_step)
        phase.resume(train_loader)
        if teacher is not None and self._teacher_weight(student, distiller) == 0:
            teacher = None  # the teacher's weight is 0: the phase is the no-teacher control, its store unneeded
        # A phase a kill left trained but unrecorded needs no teacher: its store is not built again.
        if teacher is not None and not phase.finished_training:
            topk = self.config["teacher_topk"] if self.config["teacher_store"] == "topk" else None
            # several processes: each rank computes a share of the store and receives the others' (files
            # beyond teacher_memory_gib are each rank's own)
            ranks = (global_rank(self.config), self.config["world_size"]) if several(self.config) else (0, 1)
            store_path = self.run_dir / (f"{name}_teacher.rank{ranks[0]}" if several(self.config) else f"{name}_teacher")
            phase.teacher = TeacherStore.build(
                teacher, self.train_dataset, store_path,
                self.config["teacher_batch_size"], self.device,
                make_distiller(distiller, student, student_config, topk),
                memory_limit=int(self.config["teacher_memory_gib"] * 2**30), show_progress=self.show_progress,
                ranks=ranks,
            )
            self.teacher_passes[name] = phase.teacher.forward_passes
        self.logger.info(set_color(f"LLMD4Rec phase {name}", "green") +
                         f": {type(student).__name__}, teacher {type(teacher).__name__ if teacher else 'none'}")
        try:
            self._fit_to_early_stopping(name, phase, train_loader)
        finally:
            if phase.teacher is not None:
                phase.teacher.close()
        barrier(self.config)  # rank 0 has written the chosen epoch's file
        if rank0_sees(Path(phase.saved_model_file), self.config):  # back to the phase's chosen epoch
            student.load_state_dict(load_checkpoint(phase.saved_model_file)["state_dict"])
        self.phases.append(phase_record(name, phase, self.config["phase_start_is_candidate"]))
        return phase.earlier_seconds + time.time() - started, len(phase.train_loss_dict)

    def _train_loader(self, student_config):
        """RecBole's train loader for a phase's student, with its negative sampler where the
        student's loss samples negatives (a BPR-trained CRM)."""
        sampler = None
        if student_config["train_neg_sample_args"]["distribution"] != "none":
            built = [self.train_dataset, self.valid_data._dataset, self.test_data._dataset]
            sampler = create_samplers(student_config, self.train_dataset, built)[0]
        return get_dataloader(student_config, "train")(
            student_config, self.train_dataset, sampler, shuffle=student_config["shuffle"]
        )

    def _teacher_weight(self, student, distiller):
        """The coefficient of the student's distillation term: beta (Eq. 9) for the CRM, gamma (Eq. 5) for
        the LLM, LLM-SRec's weight for its LLM; None for the other baselines (whose weight does not
        turn the teacher off)."""
        if distiller == "llmsrec":
            return self.llm_config["llmsrec_weight"]
        if distiller != "llmd4rec":
            return None
        return self.crm_config["distill_beta"] if student is self.crm else self.llm_config["distill_gamma"]

    def _fit_to_early_stopping(self, name, phase, train_loader):
        if not phase.resumed:
            # The start's score is recorded; it is a candidate only under phase_start_is_candidate
            # (a phase then never ends worse on valid than it began). By default a phase's result
            # is its best trained epoch: Algorithm 1 trains each phase to convergence.
            start_result = phase.evaluate(self.valid_data, load_best_model=False, show_progress=self.show_progress)
            phase.start_valid_score = calculate_valid_score(start_result, phase.valid_metric)
            if self.config["phase_start_is_candidate"]:
                phase.best_valid_score = phase.start_valid_score
                phase.best_valid_result = start_result
                phase._save_checkpoint(-1, verbose=False)
        try:
            phase.fit(train_loader, self.valid_data, saved=True, show_progress=self.show_progress)
        except TrainingLossIsNaN:
            raise LLMD4RecError(
                f"phase {name} stopped: the training loss became NaN (the finished steps stay in {self.state_file}); "
                "lower learning_rate or the phase's distillation coefficient and rerun: with other settings it is "
                "a new run, which starts from round 0 unless crm_checkpoint names a trained SASRec"
            ) from None

    def _evaluate_round(self, t, model_name, seconds, epochs):
        evaluator = self.crm_evaluator if model_name == "CRM" else self.llm_evaluator
        for split, data in (("valid", self.valid_data), ("test", self.test_data)):
            result = evaluator.evaluate(data, load_best_model=False, show_progress=self.show_progress)
            self.report.add(t, model_name, split, result, seconds, epochs)
            self.logger.info(f"round {t} {model_name} {split}: {dict2str(result)}")

    # ---- what the run leaves behind ------------------------------------------------------
    def _export(self):
        if not writes_files(self.config):
            return
        self.report.write(self.run_dir)
        self.report.plot(str(self.run_dir / "rounds.png"))
        write_json_atomically(self.run_dir / PHASES_FILE, self.phases)
        outputs = ["rounds.csv/json/png", PHASES_FILE, "e4srec/", "item_embeddings.itememb"]
        if self.crm.has_teacher_inputs:
            self.logger.info("no sasrec_distilled.pth: DLLM2Rec's embedding distillation feeds the LLM's item "
                             "vectors into SASRec's inputs, which a plain SASRec checkpoint cannot hold")
        else:
            export_sasrec_checkpoint(self.crm, self.crm_config, self.saved_model_file)
            outputs.append("sasrec_distilled.pth")
        self.llm.save_artifacts(self.run_dir / "e4srec")
        export_item_embeddings(self.crm.item_embedding.weight, self.train_dataset,
                               str(self.run_dir / "item_embeddings.itememb"))
        self.logger.info(f"LLMD4Rec outputs in {self.run_dir}: {', '.join(outputs)}")

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        """The distilled CRM (LLMD4Rec_C) on ``eval_data``."""
        return self.crm_evaluator.evaluate(eval_data, load_best_model=False, show_progress=show_progress)


LLMD4RecTrainer = MutualDistillTrainer  # get_trainer finds trainers as <Model>Trainer
