#!/usr/bin/env bash
# Runs every cargo-fuzz target (address sanitizer on) for a given time and prints executions,
# coverage and crashes per target. On demand, not in CI.
#
#   bench/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# FUZZ_RUNS=N also stops a target after N executions (the goal is 10 million per target).
# Run it at low priority on a shared machine: `nice -n 19 bench/fuzz.sh 600`.
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`); RUSTC_BOOTSTRAP=1 lets it use the sanitizer
# flags on the stable toolchain. Limits follow the reliability goals: no input may take over
# 1 s (-timeout=1) or allocate over 256 MiB (-rss_limit_mb=256, -malloc_limit_mb=256).
# Crashes land in fuzz/artifacts/TARGET/; each one found becomes a regression test.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-60}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <(RUSTC_BOOTSTRAP=1 cargo fuzz list)
fi
# Built once, then each target runs its binary (cargo fuzz run would take the build lock
# again per target). FUZZ_SKIP_BUILD=1 runs what is already built.
if [[ -z ${FUZZ_SKIP_BUILD:-} ]]; then
  RUSTC_BOOTSTRAP=1 cargo fuzz build -O >/dev/null  # CARGO_TARGET_DIR is honoured
fi
bin_dir=${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release
# The sanitizer keeps freed memory in a quarantine (256 MiB by default) to catch use after free;
# counted in RSS, it alone broke the 256 MiB RSS limit for targets that allocate a buffer per
# input (capture_file: 24 MB live, 162 MB quarantined). 64 MiB still catches recent frees.
export ASAN_OPTIONS=${ASAN_OPTIONS:-quarantine_size_mb=64}
printf '%-14s %12s %10s %8s %8s %8s %8s %8s\n' target executions exec/s cov ft corpus crashes seconds
for target in "${targets[@]}"; do
  corpus=corpus/$target
  mkdir -p "$corpus" "artifacts/$target"
  cp -n seeds/"$target"/* "$corpus"/ 2>/dev/null || true
  dict=()
  case $target in
    addr_notation | ssrf_guard) dict=(-dict=dict/addr.dict) ;;
    endpoint) dict=(-dict=dict/endpoint.dict) ;;
    perf_control) dict=(-dict=dict/perf.dict) ;;
    # The deframer hunts bit by bit for alignment: a few multiframes are enough to reach it.
    line_framing) dict=(-max_len=1200) ;;
  esac
  runs_limit=()
  if [[ -n ${FUZZ_RUNS:-} ]]; then runs_limit=(-runs="$FUZZ_RUNS"); fi
  started=$SECONDS
  before=$(find "artifacts/$target" -type f | wc -l)
  log=$(mktemp)
  set +e
  "$bin_dir/$target" "$corpus" -artifact_prefix="artifacts/$target/" \
    -max_total_time="$seconds" -timeout=1 -rss_limit_mb=256 -malloc_limit_mb=256 \
    -print_final_stats=1 "${dict[@]}" "${runs_limit[@]}" >"$log" 2>&1
  set -e
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo 0)
  rate=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo 0)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
  features=$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
  elapsed=$((SECONDS - started))
  files=$(find "$corpus" -type f | wc -l)
  # Only what this run wrote: earlier artifacts stay until their regression test is in.
  crashes=$(($(find "artifacts/$target" -type f | wc -l) - before))
  printf '%-14s %12s %10s %8s %8s %8s %8s %8s\n' "$target" "$runs" "$rate" "$cov" "$features" "$files" "$crashes" "$elapsed"
  if ((crashes > 0)); then
    grep -E 'ERROR|panicked|SUMMARY|Test unit written' "$log" | head -5 | sed 's/^/    /' || true
  fi
  if [[ -n ${FUZZ_LOG_DIR:-} ]]; then mv "$log" "$FUZZ_LOG_DIR/$target.log"; else rm -f "$log"; fi
done
