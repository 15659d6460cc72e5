#!/usr/bin/env bash
# Runs every cargo-fuzz target for a given time and prints executions, coverage and crashes per
# target. On demand, not in CI.
#
#   bench/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# FUZZ_RUNS=N also stops a target after N executions (the goal is 10 million per target).
#
# FUZZ_SANITIZER=address (the default) or none. Every crate the targets fuzz is
# `#![forbid(unsafe_code)]`, so the out-of-bounds reads and use-after-free the address sanitizer
# exists to catch cannot come from our code, only from a dependency's unsafe code (as etherparse
# 0.17's did, issue 12 item 1). Without it the same targets run several times faster (no shadow
# memory checks, no quarantine, no redzones), which is what reaching 10 million executions per
# target on a shared machine needs. So a long campaign runs with `none`, and an address-sanitized
# run keeps watching the dependencies. Both builds keep debug assertions and overflow checks
# (`cargo fuzz build -O -a`: `-O` alone turns them off), so an arithmetic overflow is a crash
# either way. libFuzzer's -malloc_limit_mb works only through a sanitizer's malloc hooks; the
# targets therefore link `fuzz/src/lib.rs`, which caps the Rust heap at 256 MiB in both builds.
# The two builds share one output directory: build the one you run.
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
sanitizer=${FUZZ_SANITIZER:-address}
if [[ -z ${FUZZ_SKIP_BUILD:-} ]]; then
  # CARGO_TARGET_DIR is honoured.
  RUSTC_BOOTSTRAP=1 cargo fuzz build -O -a -s "$sanitizer" >/dev/null
fi
bin_dir=${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release
# The sanitizer keeps freed memory in a quarantine (256 MiB by default) to catch use after free;
# counted in RSS, it alone broke the 256 MiB RSS limit for targets that allocate a buffer per
# input (capture_file: 24 MB live, 162 MB quarantined). 64 MiB still catches recent frees.
if [[ $sanitizer == address ]]; then
  export ASAN_OPTIONS=${ASAN_OPTIONS:-quarantine_size_mb=64}
fi
# libFuzzer's -timeout is wall-clock time: at nice 19 on a loaded machine a process can be off
# the CPU for over a second, and that ends the run as if the input were slow. Such an input is
# run again alone, three times, and its CPU time (user + system, which waiting for a CPU does not
# inflate; process start-up included) is taken: under the limit every time, the timeout was the
# machine's, the input is set aside (artifacts/TARGET/spurious/) and the run goes on with the
# executions still due. A real timeout, a crash or an out-of-memory ends the target's run.
rerun_ms() {  # the most CPU time of three lone runs of one input, in ms
  local longest=0 ms
  for _ in 1 2 3; do
    /usr/bin/time -o "$2.cpu" -f 'cpu %U %S' "$1" "$2" >/dev/null 2>&1 || true
    ms=$(awk '/^cpu/ {printf "%d", ($2 + $3) * 1000}' "$2.cpu" 2>/dev/null)
    rm -f "$2.cpu"
    ms=${ms:-99999}
    if ((ms > longest)); then longest=$ms; fi
  done
  echo "$longest"
}
printf '%-14s %12s %10s %8s %8s %8s %8s %9s %8s\n' target executions exec/s cov ft corpus crashes spurious seconds
for target in "${targets[@]}"; do
  corpus=corpus/$target
  mkdir -p "$corpus" "artifacts/$target/spurious"
  cp -n seeds/"$target"/* "$corpus"/ 2>/dev/null || true
  dict=()
  case $target in
    addr_notation | ssrf_guard) dict=(-dict=dict/addr.dict) ;;
    endpoint) dict=(-dict=dict/endpoint.dict) ;;
    perf_control) dict=(-dict=dict/perf.dict) ;;
    exporter_config) dict=(-dict=dict/exporter.dict) ;;
    # The deframer hunts bit by bit for alignment: a few multiframes are enough to reach it.
    line_framing) dict=(-max_len=1200) ;;
  esac
  started=$SECONDS
  runs=0 busy_seconds=0 spurious=0 crashes=0 cov=0 features=0
  notes=()
  log=$(mktemp)
  while true; do
    left=$((seconds - (SECONDS - started)))
    ((left > 0)) || break
    runs_limit=()
    if [[ -n ${FUZZ_RUNS:-} ]]; then
      ((runs < FUZZ_RUNS)) || break
      runs_limit=(-runs=$((FUZZ_RUNS - runs)))
    fi
    before=$(find "artifacts/$target" -maxdepth 1 -type f | wc -l)
    run_started=$SECONDS
    set +e
    "$bin_dir/$target" "$corpus" -artifact_prefix="artifacts/$target/" \
      -max_total_time="$left" -timeout=1 -rss_limit_mb=256 -malloc_limit_mb=256 \
      -print_final_stats=1 "${dict[@]}" "${runs_limit[@]}" >"$log.run" 2>&1
    set -e
    cat "$log.run" >>"$log"
    busy_seconds=$((busy_seconds + SECONDS - run_started))
    # A run that ends on a finding prints no final stats: its count is the last status line's.
    done_here=$(grep -aoE 'stat::number_of_executed_units: *[0-9]+' "$log.run" | grep -oE '[0-9]+$' || true)
    if [[ -z $done_here ]]; then
      done_here=$(grep -aoE '^#[0-9]+' "$log.run" | tail -1 | tr -d '#' || echo 0)
    fi
    runs=$((runs + ${done_here:-0}))
    cov=$(grep -aoE 'cov: [0-9]+' "$log.run" | tail -1 | grep -oE '[0-9]+' || echo "$cov")
    features=$(grep -aoE 'ft: [0-9]+' "$log.run" | tail -1 | grep -oE '[0-9]+' || echo "$features")
    new=$(($(find "artifacts/$target" -maxdepth 1 -type f | wc -l) - before))
    ((new > 0)) || break  # ended by time or by the execution count
    artifact=$(ls -t "artifacts/$target"/* 2>/dev/null | grep -v /spurious | head -1)
    if [[ $(basename "$artifact") == timeout-* ]]; then
      ms=$(rerun_ms "$bin_dir/$target" "$artifact")
      if ((ms < 1000)); then
        spurious=$((spurious + 1))
        mv "$artifact" "artifacts/$target/spurious/"
        continue
      fi
      notes+=("timeout: $artifact takes $ms ms of CPU alone")
    fi
    crashes=$((crashes + new))
    notes+=("$(grep -aE 'ERROR|panicked|SUMMARY|Test unit written' "$log.run" | tail -4 | tr '\n' ' ')")
    break
  done
  elapsed=$((SECONDS - started))
  files=$(find "$corpus" -type f | wc -l)
  rate=$((runs / (busy_seconds > 0 ? busy_seconds : 1)))
  printf '%-14s %12s %10s %8s %8s %8s %8s %9s %8s\n' "$target" "$runs" "$rate" "$cov" "$features" "$files" "$crashes" "$spurious" "$elapsed"
  for note in "${notes[@]}"; do echo "    $note"; done
  rm -f "$log.run"
  if [[ -n ${FUZZ_LOG_DIR:-} ]]; then mv "$log" "$FUZZ_LOG_DIR/$target.log"; else rm -f "$log"; fi
done
