#!/usr/bin/env bash
# Whole-system benchmark of the gateway on the embedded backend, against its peers, in one run:
#
# 1. Time to first byte for a query whose first match is early in a ~1 GiB directory (rotated
#    files: the bulk trace repeated with time shifts, one file per repetition):
#    Docket streaming (a fresh job each time) vs "Docket-py's way" (tcpdump each file to a
#    temporary file, mergecap them, then the result can be served).
# 2. Throughput of a ~1 GiB result over HTTP on loopback: Docket live (fresh job) and on a
#    spool hit, vs nginx (Debian's, started here) serving the same file, plain and chunked.
# 3. Peak anonymous memory (RssAnon) of the server during a 1 GiB result, and with 20 clients
#    on one job.
#
# Usage: benches/gateway.sh     (RUNS=5 by default; BENCH_DIR to keep the data)
# Needs: nginx, curl, tcpdump, mergecap, editcap (installs nginx with apt-get if missing).
# Traffic goes to 127.0.0.1 only; every process started here is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-5}"
bulk="${DOCKET_PCAPS:-../shared/pcaps}/bulk/mix-19-real-captures-10min.pcap"
command -v nginx >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light >/dev/null; }
# DOCKET_BIN runs a given build instead (e.g. an older commit's, for a before/after figure).
if [ -n "${DOCKET_BIN:-}" ]; then docket="$DOCKET_BIN"; else cargo build --release -q; docket="$PWD/target/release/docket"; fi
# A given BENCH_DIR is kept (it holds the generated data for the next run); a temporary one
# is removed at the end.
if [ -n "${BENCH_DIR:-}" ]; then dir="$BENCH_DIR"; keep=1; else dir=$(mktemp -d /tmp/docket-gw.XXXXXX); keep=0; fi
mkdir -p "$dir/data" "$dir/spool" "$dir/nginx"
# nginx's workers run unprivileged: let them read the spool.
chmod 755 "$dir" "$dir/spool"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ "$keep" = 1 ] || rm -rf "$dir"
}
trap cleanup EXIT

# ~1 GiB of rotated capture files.
reps=$(( 1073741824 / $(stat -c %s "$bulk") ))
if [ ! -e "$dir/data/rep-$(printf %03d $((reps - 1))).pcap" ]; then
    for ((r = 0; r < reps; r++)); do
        # pcap, as tcpdump -G writes its rotated files (editcap's default would be pcapng).
        editcap -F pcap -t $((r * 700)) "$bulk" "$dir/data/rep-$(printf %03d $r).pcap"
    done
fi
echo "data: $reps files, $(du -sm "$dir/data" | cut -f1) MiB"
# ~4 GiB: every file four times (symlinks), for the memory figure of a 4 GiB result.
mkdir -p "$dir/x4"
for f in "$dir"/data/*.pcap; do
    for k in 1 2 3 4; do ln -sf "$f" "$dir/x4/$k-$(basename "$f")"; done
done

# The host of the very first packet: its first match is at the start of the directory.
host=$(tshark -r "$bulk" -c 1 -T fields -e ip.src 2>/dev/null)
after=2023-06-01T00:00:00Z
before=2023-06-02T12:00:00Z

port=18181
cat > "$dir/docket.toml" <<EOF
listen = "127.0.0.1:$port"
spool_dir = "$dir/spool"
free_bytes = 0
time_window = 1
# Whole-directory results are asked for on purpose (no 413 for their size).
max_estimated_bytes = 0
[[local]]
name = "rotated"
path = "$dir/data"
[[local]]
name = "x4"
path = "$dir/x4"
follow_symlinks = true
EOF
"$docket" serve -c "$dir/docket.toml" > "$dir/docket.out" 2> "$dir/docket.err" &
dpid=$!; pids+=("$dpid")
for _ in $(seq 100); do grep -q listening "$dir/docket.out" 2>/dev/null && break; sleep 0.1; done
base="http://127.0.0.1:$port/app/docket"
# Warm the index (the first query of a process indexes the directory), then wait (bounded)
# for the background indexer to finish: the figures are of an indexed directory.
curl -sS "$base/q/host/192.0.2.1/after/$after/before/$before/pcap" -o /dev/null
for _ in $(seq 600); do
    curl -sS "$base/stats" | python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(any(u.get("files",{}).get("index",{}).get("backlog_bytes",0) for u in s.values() if isinstance(u, dict)))' && break
    sleep 1
done

fresh() { # DELETE the job of a path so that the next GET starts a new one
    local id
    id=$(curl -sS "$base/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    curl -sS -X DELETE "$base/$id" -o /dev/null || true
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo
echo "== 1. time to first byte, host $host (first match early in the directory)"
q="q/sensor/rotated/host/$host/after/$after/before/$before"
for ((i = 0; i < runs; i++)); do
    fresh "$q"
    curl -sS -o /dev/null -w '%{time_starttransfer}\n' "$base/$q/pcap"
done | median > "$dir/ttfb-docket"
for ((i = 0; i < runs; i++)); do
    start=$(date +%s.%N)
    parts=()
    for f in "$dir"/data/*.pcap; do
        tcpdump -r "$f" -w "$dir/py-$(basename "$f")" "host $host" 2>/dev/null
        parts+=("$dir/py-$(basename "$f")")
    done
    mergecap -w "$dir/py-merged.pcap" "${parts[@]}"
    end=$(date +%s.%N)
    rm -f "${parts[@]}"
    python3 -c "print($end - $start)"
done | median > "$dir/ttfb-py"
python3 - "$(cat "$dir/ttfb-docket")" "$(cat "$dir/ttfb-py")" <<'EOF'
import sys
d, p = float(sys.argv[1]), float(sys.argv[2])
print(f"  docket streaming: {d*1000:.1f} ms (median); Docket-py's way (tcpdump per file + mergecap, before serving): {p*1000:.0f} ms")
print(f"  ratio: {p/d:.0f}x sooner")
EOF

# nginx on the same machine, serving the result file.
cat > "$dir/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log;
events { worker_connections 64; }
http {
    access_log off;
    sendfile on;
    server {
        listen 127.0.0.1:$((port + 1));
        root $dir/spool;
        location /chunked/ { alias $dir/spool/; chunked_transfer_encoding on; sendfile off; gzip off; }
    }
}
EOF
nginx -c "$dir/nginx/nginx.conf" -p "$dir/nginx" &
npid=$!; pids+=("$npid")
sleep 0.5

echo
echo "== 2. throughput of a ~1 GiB result over HTTP on loopback"
qa="q/sensor/rotated/after/$after/before/$before"
speed() { curl -sS -o /dev/null -w '%{speed_download}\n' "$@"; }
for ((i = 0; i < runs; i++)); do fresh "$qa"; speed "$base/$qa/pcap"; done | median > "$dir/live"
for ((i = 0; i < runs; i++)); do speed "$base/$qa/pcap"; done | median > "$dir/hit"
id=$(curl -sS "$base/$qa" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
for ((i = 0; i < runs; i++)); do speed "http://127.0.0.1:$((port + 1))/$id.pcap"; done | median > "$dir/nginx-plain"
python3 - "$(cat "$dir/live")" "$(cat "$dir/hit")" "$(cat "$dir/nginx-plain")" "$(stat -c %s "$dir/spool/$id.pcap")" <<'EOF'
import sys
live, hit, ng, size = map(float, sys.argv[1:])
print(f"  result {size/2**20:.0f} MiB")
print(f"  docket live (fresh job): {live/1e6:.0f} MB/s = {live/ng*100:.0f}% of nginx")
print(f"  docket spool hit:        {hit/1e6:.0f} MB/s = {hit/ng*100:.0f}% of nginx")
print(f"  nginx (sendfile):        {ng/1e6:.0f} MB/s")
EOF

echo
echo "== 3. peak RssAnon of the server"
peak() { local p=0 v; while kill -0 "$1" 2>/dev/null && [ -e "$2" ]; do v=$(awk '/^RssAnon/ {print $2}' /proc/"$dpid"/status); [ "$v" -gt "$p" ] && p=$v; sleep 0.01; done; echo "$p"; }
touch "$dir/sampling"; peak "$dpid" "$dir/sampling" > "$dir/rss1" &
spid=$!
fresh "$qa"; curl -sS -o /dev/null "$base/$qa/pcap"
rm "$dir/sampling"; wait "$spid"
echo "  during a 1 GiB live result: $(cat "$dir/rss1") KiB"
touch "$dir/sampling"; peak "$dpid" "$dir/sampling" > "$dir/rss20" &
spid=$!
fresh "$qa"
clients=()
for _ in $(seq 20); do curl -sS -o /dev/null "$base/$qa/pcap" & clients+=($!); done
wait "${clients[@]}"
rm "$dir/sampling"; wait "$spid" || true
echo "  20 clients on one 1 GiB job: $(cat "$dir/rss20") KiB"
rm -f "$dir"/spool/*.pcap
touch "$dir/sampling"; peak "$dpid" "$dir/sampling" > "$dir/rss4" &
spid=$!
q4="q/sensor/x4/after/$after/before/$before"
speed4=$(curl -sS -o /dev/null -w '%{speed_download} %{size_download}' "$base/$q4/pcap")
rm "$dir/sampling"; wait "$spid" || true
echo "  during a $(echo "$speed4" | awk '{printf "%.1f", $2/2^30}') GiB live result: $(cat "$dir/rss4") KiB ($(echo "$speed4" | awk '{printf "%.0f", $1/1e6}') MB/s)"
