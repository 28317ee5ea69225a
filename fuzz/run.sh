#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS (default 60) each, seeded from the team corpus
# (../shared/pcaps/fuzz-seeds, read-only: libFuzzer writes new inputs to fuzz/corpus/<target>).
# Installs cargo-fuzz if it is missing. Crashes land in fuzz/artifacts/<target>/ and fail the run.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
seeds="${DOCKET_PCAPS:-../shared/pcaps}/fuzz-seeds"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
for target in pcap_reader merge; do
    mkdir -p "fuzz/corpus/$target"
    extra=()
    [ "$target" = pcap_reader ] && extra=("$seeds")
    echo "fuzzing $target for ${seconds}s"
    cargo +nightly fuzz run "$target" "fuzz/corpus/$target" "${extra[@]}" -- \
        -max_total_time="$seconds" -rss_limit_mb=1024 -max_len=65536 2>&1 | grep -E '^(#[0-9]+ *DONE|Done|==|SUMMARY|artifact)' || true
    if ls "fuzz/artifacts/$target"/crash-* "fuzz/artifacts/$target"/oom-* "fuzz/artifacts/$target"/timeout-* >/dev/null 2>&1; then
        echo "fuzz target $target found a failure: see fuzz/artifacts/$target" >&2
        exit 1
    fi
done
