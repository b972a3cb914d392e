"""How one distillation direction responds to its coefficient and temperature, from trained
checkpoints: a short LLMD4Rec run (one round, one direction) per setting.

    python benchmarks/distill_settings.py --student=crm --dataset=beauty --data_path=DIR \
        --crm_checkpoint=SASREC.pth --llm_checkpoint=E4SREC.pth --settings=0:0.2,0.5:0.2,0.5:1.0 \
        --epochs=6 --seed=2020 --out=DIR

``--student=crm``: the SASRec checkpoint goes on training as SASRecD, taught by the E4SRec
checkpoint as is (Eq. 7-9: a setting is beta:T2). ``--student=llm``: E4SRec trains from the
SASRec checkpoint's item embeddings, taught by the SASRec (Eq. 3-5: gamma:T1). Coefficient 0
is the control: the same training without the teacher. Each setting runs at most ``--epochs``
epochs in its own folder under ``--out``; a finished setting is read back, not run again, so
an interrupted probe resumes. Prints a Markdown table of each setting's best validation
NDCG@10 and HR@10, the test results of that epoch, and the validation metric after each epoch
(from the setting's ``run.log``); a student that no epoch improved keeps its starting weights.
"""

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOG_FILE = "run.log"  # a setting's output, beside its run folder
VALID_SCORE = re.compile(r"epoch \d+ evaluating \[.*valid_score: ([0-9.]+)\]")  # RecBole's per-epoch line
# (direction, the student's config section, its coefficient key, the round-1 row it writes)
STUDENTS = {
    "crm": ("llm_to_crm", "crm", "distill_beta", "CRM"),
    "llm": ("crm_to_llm", "llm", "distill_gamma", "LLM"),
}


def run_setting(args, coefficient, temperature):
    """The round-1 rows of the student for one setting: run it unless its folder has them."""
    direction, section, coefficient_key, part = STUDENTS[args.student]
    folder = Path(args.out) / f"{args.student}-{coefficient_key}{coefficient}-T{temperature}"
    finished = sorted(folder.glob("*/rounds.json"))
    if not finished:
        overrides = {coefficient_key: coefficient, "distill_temperature": temperature, "epochs": args.epochs}
        command = [
            sys.executable, str(REPO / "run_llmd4rec.py"), "--model=LLMD4Rec", f"--dataset={args.dataset}",
            f"--directions={direction}", "--mutual_rounds=1", f"--seed={args.seed}",
            f"--crm_checkpoint={args.crm_checkpoint}", f"--checkpoint_dir={folder}", f"--{section}={overrides!r}",
        ]
        if args.student == "crm":
            command.append(f"--llm_checkpoint={args.llm_checkpoint}")
        if args.data_path:
            command.append(f"--data_path={args.data_path}")
        print(" ".join(command), flush=True)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / LOG_FILE, "w") as log:
            if subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
                raise SystemExit(f"error: the setting {coefficient_key}={coefficient}, T={temperature} failed; "
                                 f"its output is in {folder / LOG_FILE}")
        finished = sorted(folder.glob("*/rounds.json"))
    rounds = json.loads(finished[-1].read_text())
    rows = {row["split"]: row for row in rounds if row["round"] == 1 and row["model"] == part}
    log_file = folder / LOG_FILE
    rows["curve"] = VALID_SCORE.findall(log_file.read_text()) if log_file.is_file() else []
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", choices=sorted(STUDENTS), required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--crm_checkpoint", required=True)
    parser.add_argument("--llm_checkpoint", help="the teacher, for --student=crm")
    parser.add_argument("--settings", required=True, help="comma-separated coefficient:temperature pairs")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.student == "crm" and not args.llm_checkpoint:
        parser.error("--student=crm needs --llm_checkpoint (the teacher)")
    try:
        settings = [tuple(float(x) for x in pair.split(":")) for pair in args.settings.split(",")]
    except ValueError:
        settings = []
    if not settings or any(len(setting) != 2 for setting in settings):
        parser.error(f"--settings must be coefficient:temperature pairs like 0.5:0.2, got {args.settings!r}")
    key = STUDENTS[args.student][2]
    lines = [f"| {key} | T | valid HR@10 | valid NDCG@10 | test HR@10 | test NDCG@10 | epochs | seconds | valid metric per epoch |",
             "|---|---|---|---|---|---|---|---|---|"]
    for coefficient, temperature in settings:
        rows = run_setting(args, coefficient, temperature)
        valid, test = rows["valid"], rows["test"]
        lines.append(f"| {coefficient:g} | {temperature:g} | {valid['hit@10']:.4f} | {valid['ndcg@10']:.4f} | "
                     f"{test['hit@10']:.4f} | {test['ndcg@10']:.4f} | {test['epochs']} | {test['phase_seconds']:.0f} | "
                     f"{' '.join(f'{float(score):.4f}' for score in rows['curve'])} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
