#!/usr/bin/env bash
# Whole-system benchmark: `docket merge` against `mergecap` on the same inputs, in one run.
#
# Builds inputs of ~1 GiB and ~4 GiB in a temp dir from the bulk trace of the team corpus:
# the trace is split round-robin into N parts (so every input overlaps every other in time, as
# sensors do), and each part is repeated with time shifts (editcap -t) until the set reaches
# the size. Then, per set, hyperfine times `docket merge -w FILE` and `mergecap -F pcap -w FILE`
# (min/median), a pipe run is compared with `cat FILE | cat` (the pipe's ceiling), and the peak
# anonymous memory (RssAnon, sampled from /proc) and peak RSS (/usr/bin/time -v) of each are
# reported.
#
# Usage: benches/vs-mergecap.sh [SIZES_GIB...]   (default: 1 4)
# Needs: hyperfine, mergecap/editcap (wireshark-common), tshark, GNU time. Writes only under
# $BENCH_DIR (default: a new dir in /tmp), removed at the end unless KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("${@:-1 4}")
[ $# -gt 0 ] || sizes=(1 4)
bulk="${DOCKET_PCAPS:-../shared/pcaps}/bulk/mix-19-real-captures-10min.pcap"
cargo build --release -q
docket="$PWD/target/release/docket"
dir="${BENCH_DIR:-$(mktemp -d /tmp/docket-bench.XXXXXX)}"
mkdir -p "$dir"
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$dir"' EXIT
bulk_bytes=$(stat -c %s "$bulk")
span=700 # seconds between repetitions: the bulk trace spans 660 s

# make_set NAME N GIB [FORMATS...]: N inputs of GIB GiB in all; FORMATS per input (pcap,
# pcapng, nsecpcap), default pcap.
make_set() {
    local name=$1 n=$2 gib=$3; shift 3
    local formats=("$@")
    local reps=$(( (gib * 1073741824) / bulk_bytes ))
    mkdir -p "$dir/$name"
    for ((k = 0; k < n; k++)); do
        local fmt=${formats[$k]:-pcap}
        local part="$dir/$name/part$k.pcap"
        tshark -r "$bulk" -Y "frame.number % $n == $k" -F pcap -w "$part" 2>/dev/null
        local reps_files=()
        for ((r = 0; r < reps; r++)); do
            editcap -F "$fmt" -t $((r * span)) "$part" "$dir/$name/rep$k-$r" 2>/dev/null
            reps_files+=("$dir/$name/rep$k-$r")
        done
        mergecap -a -F "$fmt" -w "$dir/$name/in$k.$fmt" "${reps_files[@]}"
        rm -f "${reps_files[@]}" "$part"
    done
}

# peak_anon CMD...: runs CMD, samples /proc/PID/status every 5 ms, prints peak RssAnon in KiB.
peak_anon() {
    "$@" &
    local pid=$! peak=0 v
    while kill -0 "$pid" 2>/dev/null; do
        v=$(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        [ -n "$v" ] && [ "$v" -gt "$peak" ] && peak=$v
        sleep 0.005
    done
    wait "$pid" || true
    echo "$peak"
}

peak_rss() {
    /usr/bin/time -v "$@" 2>&1 >/dev/null | awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}'
}

report() {
    local name=$1; shift
    local inputs=("$dir/$name"/in*)
    local bytes
    bytes=$(du -cb "${inputs[@]}" | tail -1 | cut -f1)
    echo
    echo "== $name: ${#inputs[@]} inputs, $((bytes / 1048576)) MiB"
    # The ceiling to a file: copying the same bytes into a file with cat (the page-cache copy
    # that any merge must pay), measured in the same run.
    hyperfine --warmup 1 --runs "${RUNS:-5}" --export-json "$dir/$name.json" \
        -n docket "$docket merge -w $dir/out-docket.pcap ${inputs[*]}" \
        -n mergecap "mergecap ${MERGECAP_FORMAT:--F pcap} -w $dir/out-mergecap.pcap ${inputs[*]}" \
        -n cat "cat ${inputs[*]} > $dir/out-cat.pcap" >/dev/null
    python3 - "$dir/$name.json" "$bytes" <<'EOF'
import json, sys, statistics
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
b = int(sys.argv[2])
for n, x in r.items():
    print(f"  {n:9s} min {x['min']:.3f}s median {x['median']:.3f}s  ({b / x['median'] / 1e6:.0f} MB/s)")
d, m, c = r["docket"], r["mergecap"], r["cat"]
print(f"  ratio mergecap/docket: {m['median'] / d['median']:.2f}x (median), {m['min'] / d['min']:.2f}x (min)")
print(f"  docket at {c['median'] / d['median'] * 100:.0f}% of the speed of cat into a file (median)")
EOF
    # To a pipe, against the pipe's own ceiling.
    local t0 t1 t2 t3
    t0=$(date +%s.%N); "$docket" merge -w - "${inputs[@]}" | cat >/dev/null; t1=$(date +%s.%N)
    cat "$dir/out-docket.pcap" | cat >/dev/null
    t2=$(date +%s.%N); cat "$dir/out-docket.pcap" | cat >/dev/null; t3=$(date +%s.%N)
    python3 -c "d=$t1-$t0; c=$t3-$t2; print(f'  pipe: docket {d:.3f}s, cat|cat {c:.3f}s: docket at {c/d*100:.0f}% of the pipe ceiling')"
    echo "  peak RssAnon: docket $(peak_anon "$docket" merge -w "$dir/out-docket.pcap" "${inputs[@]}") KiB," \
        "mergecap $(peak_anon mergecap -F pcap -w "$dir/out-mergecap.pcap" "${inputs[@]}") KiB"
    echo "  peak RSS (time -v, includes mapped file pages): docket $(peak_rss "$docket" merge -w "$dir/out-docket.pcap" "${inputs[@]}") KiB," \
        "mergecap $(peak_rss mergecap -F pcap -w "$dir/out-mergecap.pcap" "${inputs[@]}") KiB"
    rm -f "$dir/out-docket.pcap" "$dir/out-mergecap.pcap" "$dir/out-cat.pcap"
}

for gib in "${sizes[@]}"; do
    make_set "3x-${gib}g" 3 "$gib"
    report "3x-${gib}g"
    rm -rf "$dir/3x-${gib}g"
    # 8 inputs at the first size only (the 4 GiB run is about memory staying flat).
    if [ "$gib" = "${sizes[0]}" ]; then
        make_set "8x-${gib}g" 8 "$gib"
        report "8x-${gib}g"
        rm -rf "$dir/8x-${gib}g"
    fi
    if [ "$gib" = "${sizes[0]}" ]; then
        # The three-sensor mix: pcap µs + pcapng + pcap ns. Docket writes ns pcap by its rule;
        # mergecap is asked for the same (nsecpcap) so both do the same work.
        make_set "mix-${gib}g" 3 "$gib" pcap pcapng nsecpcap
        MERGECAP_FORMAT="-F nsecpcap" report "mix-${gib}g"
        rm -rf "$dir/mix-${gib}g"
    fi
done
