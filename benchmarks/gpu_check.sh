#!/usr/bin/env bash
# The multi-process checks on a GPU machine: tests/test_distributed.py with NCCL, world size 1 on one
# card (and 2 where two cards are visible), then one step of each plugin model through the run script
# on one rank. Run from anywhere; it needs the plugin's dependencies and a CUDA build of torch.
#
#     bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

gpus=$(python -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)")
if [ "$gpus" -lt 1 ]; then
    echo "error: no GPU visible to torch (a CUDA build of torch and a visible card are needed)" >&2
    exit 2
fi
python -c "import torch; print('GPU:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"

# NCCL, one rank: DDP's step, the killed and resumed LLMD4Rec run, evaluation equal to one process
LLMD4REC_TEST_NPROC=1 python -m pytest -q -x tests/test_distributed.py
if [ "$gpus" -ge 2 ]; then
    LLMD4REC_TEST_NPROC=2 python -m pytest -q -x tests/test_distributed.py
fi

# Each model through the run script on one NCCL rank, on the data set that ships inside recbole
repo=$PWD
work=$(mktemp -d)
for model in SASRecD E4SRec LLMD4Rec SASRec; do
    extra=()
    if [ "$model" = LLMD4Rec ]; then extra=(--mutual_rounds=1); fi
    (cd "$work" && python "$repo/run_llmd4rec.py" --model="$model" --dataset=ml-100k --epochs=1 ${extra[@]+"${extra[@]}"} \
        --nproc=1 --world_size=1 --port=29517 --state=warning --checkpoint_dir="$work/saved") \
        || { echo "error: $model on one NCCL rank failed (its log is in $work/log)" >&2; exit 1; }
    echo "$model: one NCCL rank, ok"
done
echo "gpu_check: all passed"
