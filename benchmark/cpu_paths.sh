#!/usr/bin/env bash
# Does the CPU's instruction set change a run's numbers? Three SHAC iterations (4 envs x 16 steps, seed 1) per
# task, once as this machine runs them and once with torch's ATen kernels and MKL held to their AVX2 code paths
# (what a CPU without AVX-512 runs), then the same with MKL's conditional numerical reproducibility
# (MKL_CBWR=AVX2) instead; prints whether the trained actors are bit-identical (docs/usage.md#reproducibility).
#   bash benchmark/cpu_paths.sh [workdir]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d)}
run() {  # run NAME TASK ENV...
  local name=$1 task=$2; shift 2
  mkdir -p "$work/$task/$name"
  (cd "$work/$task/$name" && env OMP_NUM_THREADS=1 "$@" python "$repo/shac_dflex.py" --env-id "$task" \
    --num-envs 4 --horizon 16 --total-timesteps 192 --episode-length 40 --seed 1 --save-model --exp-name r \
    > log.txt 2>&1)
}
for task in CartPole Ant; do
  run native "$task"
  run native_again "$task"
  run avx2 "$task" ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2
  run avx2_cbwr "$task" ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2
done
python - "$work" <<'PY'
import glob, sys, torch
work = sys.argv[1]
load = lambda task, name: torch.load(glob.glob(f"{work}/{task}/{name}/runs/*/r.model")[0], weights_only=True)["actor"]
for task in ("CartPole", "Ant"):
    native = load(task, "native")
    for name in ("native_again", "avx2", "avx2_cbwr"):
        other = load(task, name)
        gap = max((native[k] - other[k]).abs().max().item() for k in native)
        print(f"{task:8s} native vs {name:12s}: largest actor difference {gap:.3g}")
    avx2, cbwr = load(task, "avx2"), load(task, "avx2_cbwr")
    print(f"{task:8s} avx2 vs avx2_cbwr: bit-identical {all(torch.equal(avx2[k], cbwr[k]) for k in avx2)}")
PY
