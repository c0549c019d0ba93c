#!/usr/bin/env bash
# The reusable action's `repro` step (action.yml): turns the action's inputs into a
# `cargo xtask repro` command line, runs it from the action's own checkout, and reports the
# verdict and the run directory as step outputs. Exits with repro's code (0 only when identical).
set -euo pipefail

# Paths are the caller's, relative to its workspace.
absolute() { case "$1" in /*) echo "$1" ;; *) echo "${GITHUB_WORKSPACE:-$PWD}/$1" ;; esac; }

out="${RUNNER_TEMP:-/tmp}/memrepro"
args=(repro --policy "$INPUT_POLICY" --out-dir "$out")
if [ "$INPUT_POLICY" = deterministic ]; then args+=(--memory-budget "$INPUT_BUDGET"); fi
if [ -n "$INPUT_WASM" ]; then
  [ -n "$INPUT_BLOCKS" ] || { echo "memrepro: the wasm input needs the blocks input too" >&2; exit 2; }
  args+=(--wasm "$(absolute "$INPUT_WASM")" --blocks "$(absolute "$INPUT_BLOCKS")")
fi
for limit in $INPUT_LIMITS; do args+=(--limit "$limit"); done

set +e
cargo xtask "${args[@]}"
code=$?
set -e

run_dir=$(ls -d "$out"/*/ 2>/dev/null | tail -n 1)
if [ -n "$run_dir" ] && [ -f "$run_dir/report.json" ]; then
  verdict=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["verdict"])' "$run_dir/report.json")
  echo "verdict=$verdict" >> "${GITHUB_OUTPUT:-/dev/null}"
  echo "run-dir=${run_dir%/}" >> "${GITHUB_OUTPUT:-/dev/null}"
fi
exit "$code"
