#!/usr/bin/env bash
# Check and measure a GPU machine in one command; every step fits in 10 minutes.
#
#   bash benchmark/gpu_check.sh               # all steps
#   bash benchmark/gpu_check.sh tests         # one step: tests | speed-ant | speed-hopper | rpo-ant
#
# Steps: the CUDA tests (tests/test_cuda.py); benchmark/speed.py --cuda for Ant N = 128 and Hopper N = 1024;
# RPO on Ant N = 128 for 9 minutes. Each step's output is appended to benchmark/results/gpu_<gpu name>.md,
# which starts with the GPU's name, driver and the package versions.
set -uo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no usable CUDA GPU here (torch.cuda.is_available() is False); run it on a GPU machine" >&2
  exit 1
fi
step=${1:-all}
case "$step" in
  all | tests | speed-ant | speed-hopper | rpo-ant) ;;
  *) echo "gpu_check: unknown step '$step'; use all, tests, speed-ant, speed-hopper or rpo-ant" >&2; exit 2 ;;
esac

gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)
driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n 1)
out="benchmark/results/gpu_$(echo "$gpu" | tr -cs 'A-Za-z0-9' '_' | tr 'A-Z' 'a-z' | sed 's/_$//').md"
if [ ! -f "$out" ]; then
  {
    echo "# GPU check: $gpu"
    echo
    echo "Driver $driver; $(python3 -c 'import platform, torch, warp; print(f"Python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), warp-lang {warp.config.version}")')."
    echo "Written by \`bash benchmark/gpu_check.sh\`, one section per step."
  } > "$out"
fi

run_step() {  # run_step NAME COMMAND...: run COMMAND with a 10-minute limit and append its output to $out
  local name=$1
  shift
  echo "== $name: $*"
  {
    echo
    echo "## $name ($(date -u '+%Y-%m-%d %H:%M UTC'))"
    echo
    echo "\`$*\`"
    echo
    echo '```'
  } >> "$out"
  timeout 600 "$@" 2>&1 | tee -a "$out"
  local status=${PIPESTATUS[0]}
  { echo '```'; echo; echo "exit status $status"; } >> "$out"
  return "$status"
}

failed=0
if [ "$step" = all ] || [ "$step" = tests ]; then
  run_step "CUDA tests" python3 -m pytest tests/test_cuda.py -q -rs || failed=1
fi
if [ "$step" = all ] || [ "$step" = speed-ant ]; then
  run_step "Speed, Ant N = 128" python3 benchmark/speed.py --cuda --env-id Ant --num-envs 128 --iterations 5 --warmup 1 \
    || failed=1
fi
if [ "$step" = all ] || [ "$step" = speed-hopper ]; then
  run_step "Speed, Hopper N = 1024" python3 benchmark/speed.py --cuda --env-id Hopper --num-envs 1024 --iterations 5 \
    --warmup 1 || failed=1
fi
if [ "$step" = all ] || [ "$step" = rpo-ant ]; then
  # 9 minutes of training; the progress lines give env steps per second and the returns reached
  run_step "RPO on Ant N = 128 for 9 minutes" timeout 540 python3 -u rpo_continuous_dflex.py --env-id Ant --num-envs 128 \
    --total-timesteps 100000000 --exp-name gpu_check_rpo --no-evaluate
  [ $? -eq 124 ] || failed=1  # 124: stopped by the 9-minute limit, as intended
fi
echo "results appended to $out"
exit $failed
