"""Run a model of the plugin or of RecBole with RecBole's command-line conventions.

    python run_llmd4rec.py                                  # the main job on ml-100k
    python run_llmd4rec.py --model=GRU4Rec --dataset=ml-100k --epochs=1
    python run_llmd4rec.py -m SASRec -d beauty --data_path=dataset/ --config_files="a.yaml b.yaml"
    python run_llmd4rec.py --compare -d beauty --data_path=dataset/ --seeds=3 [--ablation] [--status] [--tables [--as_recorded]] [--compare_dir=DIR]
    python run_llmd4rec.py -m LLMD4Rec -d beauty --data_path=dataset/ --nproc=4 [--world_size=8 --ip=HOST --port=5678 --offset=4]

Any ``--key=value`` overrides a config key; ``--nproc`` and the other keys of RecBole's
multi-process mode run one run on several processes (docs/several-processes.md). Bad input ends
in one ``error:`` line, exit 2.
"""

import argparse
import sys

MAIN_JOB_MODEL = "LLMD4Rec"
MAIN_JOB_DATASET = "ml-100k"
MAIN_JOB_CONFIG = "main_job.yaml"  # in properties/: the main job's CPU-sized budget
COMPARE_OPTIONS = ("seeds", "methods", "ablation", "status", "tables", "as_recorded", "compare_dir")  # options that only --compare reads


def parse_args(argv):
    # No abbreviations: ``--seed=2021`` is RecBole's seed key, not a shortened ``--seeds``.
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--model", "-m", default=None, help=f"model name (default {MAIN_JOB_MODEL})")
    parser.add_argument("--dataset", "-d", default=None, help=f"data set name (default {MAIN_JOB_DATASET})")
    parser.add_argument("--config_files", default=None, help="space-separated yaml files, later ones win")
    parser.add_argument("--compare", action="store_true",
                        help="train and test every method side by side (recbole_llmd4rec/experiments/)")
    parser.add_argument("--seeds", type=int, default=None, help="--compare: seeds per method (default 3)")
    parser.add_argument("--methods", default=None, help="--compare: comma-separated methods (default: all)")
    parser.add_argument("--ablation", action="store_true", help="--compare: add the LLMD4Rec ablations")
    parser.add_argument("--status", action="store_true",
                        help="--compare: say which runs are finished, started or still to train; train nothing")
    parser.add_argument("--tables", action="store_true",
                        help="--compare: write the tables from every finished result of the chosen methods; "
                             "train nothing")
    parser.add_argument("--as_recorded", action="store_true",
                        help="--compare --tables: read every record in the folder without checking its settings "
                             "(records an older version of the code kept)")
    parser.add_argument("--compare_dir", default=None,
                        help="--compare: folder of its runs, records and tables (default saved/compare-DATASET-LOSS, LOSS the --crm_loss_type)")
    return parser.parse_known_args(argv)


def main(argv=None):
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    compare_only = [f"--{name}" for name in COMPARE_OPTIONS if getattr(args, name) not in (None, False)]
    if compare_only and not args.compare:
        print(f"error: {', '.join(compare_only)} only goes with --compare; add --compare or drop it", file=sys.stderr)
        return 2
    from recbole_llmd4rec import LLMD4RecError, run_llmd4rec
    from recbole_llmd4rec.config import PROPERTIES_DIR
    from recbole_llmd4rec.errors import report_bad_input

    config_files = args.config_files.split() if args.config_files else []
    if args.model is None and args.dataset is None:
        config_files.insert(0, str(PROPERTIES_DIR / MAIN_JOB_CONFIG))
    model = args.model or MAIN_JOB_MODEL
    dataset = args.dataset or MAIN_JOB_DATASET
    try:
        if args.compare:
            from recbole_llmd4rec.experiments.runner import DEFAULT_SEEDS, compare

            seeds = DEFAULT_SEEDS if args.seeds is None else args.seeds
            compare(dataset, config_files, overrides, seeds, args.methods, args.ablation, out_dir=args.compare_dir,
                    status=args.status, tables=args.tables, as_recorded=args.as_recorded)
        else:
            run_llmd4rec(model=model, dataset=dataset, config_file_list=config_files, cmd_args=overrides)
    except LLMD4RecError as exc:
        return report_bad_input(exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
