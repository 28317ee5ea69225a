#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS (default 60) each, seeded from the team corpus
# (../shared/pcaps/fuzz-seeds and fuzz/seeds/http_request, read-only: libFuzzer writes new inputs
# to fuzz/corpus/<target>).
# Crashes land in fuzz/artifacts/<target>/ and fail the run. FUZZ_TARGETS="a b" runs only those.
#
# cargo-fuzz needs nightly-only compiler flags (sanitizers): nightly is used when installed,
# otherwise the stable compiler with RUSTC_BOOTSTRAP=1. cargo-fuzz is installed from crates.io
# if missing; if that is impossible, fuzzing is skipped with the reason (exit 0), so that a
# machine without it still runs the rest of the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
seeds="${DOCKET_PCAPS:-../shared/pcaps}/fuzz-seeds"
toolchain=()
if cargo +nightly --version >/dev/null 2>&1; then
    toolchain=(+nightly)
else
    export RUSTC_BOOTSTRAP=1
fi
if ! cargo "${toolchain[@]}" fuzz --version >/dev/null 2>&1; then
    if ! cargo install cargo-fuzz --locked; then
        echo "fuzz: skipped: cargo-fuzz cannot be installed here" >&2
        exit 0
    fi
fi
for target in ${FUZZ_TARGETS:-pcap_reader merge query_parse http_request}; do
    mkdir -p "fuzz/corpus/$target"
    extra=()
    [ "$target" = pcap_reader ] && extra=("$seeds")
    [ "$target" = http_request ] && extra=(fuzz/seeds/http_request)
    echo "fuzzing $target for ${seconds}s"
    log="fuzz/corpus/$target.log"
    status=0
    cargo "${toolchain[@]}" fuzz run "$target" "fuzz/corpus/$target" "${extra[@]}" -- \
        -max_total_time="$seconds" -rss_limit_mb=1024 -max_len=65536 -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    grep -E '^(Done|stat::number_of_executed_units|SUMMARY)' "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 40 "$log" >&2
        echo "fuzz target $target failed (exit $status): see $log and fuzz/artifacts/$target" >&2
        exit 1
    fi
done
