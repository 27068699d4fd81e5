#!/usr/bin/env bash
# The GPU measurements of flowbench in one script, for a machine with CUDA (not CI):
#  1. every agent's training step captured as CUDA graphs trains exactly as the eager step does;
#  2. `flowbench timing`: FQL full updates at K = 1, 10, 32 with and without the graph, 1 and 8 seeds per
#     process; every other algorithm at K = 10 with and without the graph (paper sizes, batch 256);
#  3. where an FQL step's GPU time goes (kernel time per operator, 1 and 8 seeds);
#  4. a short real run (toy/bimodal-v0, 3000 steps, seeds 0-7 in one process) with the graph, to compare with the
#     same run on a CPU (results/timing/gpu/toy_cpu/).
# Results go under $RESULTS (default results/timing/gpu); with ARCHIVE=file.tgz they are also packed into
# one archive after each step (for machines that return only a few files). Run from the repository root:
#     bash tests/benchmarks/gpu.sh
# Where minari, gymnasium(-robotics), mujoco, rliable, arch... are missing, wheels in .whl/ are installed first
# (the GPU machines here lack those: `harness.timing` imports rliable for its plots).
set -uo pipefail
RESULTS=${RESULTS:-results/timing/gpu}
mkdir -p "$RESULTS"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
else
  export PYTHONPATH=$PWD
fi
export MINARI_DATASETS_PATH=${MINARI_DATASETS_PATH:-/tmp/flowbench-minari}
FB="python3 -m harness.cli"
status=0
log() {
  # checkpoints left out: the toy runs' would take the archive past what comes back from a device machine
  [ -n "${ARCHIVE:-}" ] && tar -czf "$ARCHIVE" --exclude="*.pt" --exclude=".lock" -C "$RESULTS" .
  echo "== $* ($(date +%T))"
}

nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"

log "graph check"
python3 tests/benchmarks/gpu_graph_check.py --out "$RESULTS/graph_check.json" || status=1

log "timing: fql"
$FB timing --algos fql --flow-steps 1,10,32 --parts full_update --seeds 1,8 --cuda-graph auto,off \
  --updates ${UPDATES:-150} --rounds 3 --out "$RESULTS/fql" || status=1

log "timing: every algorithm at K = 10"
$FB timing --algos bc,flow_bc,iql,rebrac,ifql,flowq,qipo,qipo_diff,diffusion_ql,idql,srpo,cac,fawac,fbrac --flow-steps 10 --parts full_update \
  --cuda-graph auto,off --updates ${UPDATES:-150} --rounds 3 --out "$RESULTS/all" || status=1

log "kernel profile: fql, 1 and 8 seeds"
python3 tests/benchmarks/gpu_kernel_profile.py --algo fql --seeds 1,8 --rows 30 --out "$RESULTS/profile_fql.txt" > /dev/null || status=1

log "toy runs"
$FB data build toy/bimodal-v0 || status=1
for algo in fql flowq; do
  $FB run $algo toy/bimodal-v0 --profile cpu --steps 3000 --eval-every 1000 --eval-episodes 500 --log-every 500 \
    --seeds 0-7 --out "$RESULTS/toy/$algo/seed{seed}" || status=1
done
log "done (status $status)"
exit $status
