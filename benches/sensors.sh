#!/usr/bin/env bash
# Whole-system benchmark of Docket in front of two real Stenographer sensors, in one run:
#
# 1. Time from request to first packet at the client, for a query whose answer is ~100 MB per
#    sensor: Docket streaming (a fresh job each time) vs "Docket-py's way" (wait for both full
#    answers, in parallel, then mergecap, then the file can be served).
# 2. Throughput: Docket's streamed result vs the two direct curls in parallel (what the sensors
#    and the TLS clients can do at all on this machine).
# 3. Peak memory (RssAnon) of the Docket process during those jobs.
#
# Usage: benches/sensors.sh         (RUNS=3 by default)
# The sensors run in network namespaces made by ../shared/steno/up.sh on 198.51.100.0/24 (the
# range benches may assign; up.sh refuses overlaps); the gateway is on
# 127.0.0.1. Every process is stopped by PID; down.sh removes the sensors.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-3}"
steno="${DOCKET_STENO:-../shared/steno}"
bulk="${DOCKET_PCAPS:-../shared/pcaps}/bulk/mix-19-real-captures-10min.pcap"
work=/tmp/docket-bench-sensors
dir=$(mktemp -d /tmp/docket-sensors.XXXXXX)
cargo build --release -q
docket="$PWD/target/release/docket"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    "$steno/down.sh" "$work" >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

"$steno/down.sh" "$work" >/dev/null 2>&1 || true
STENO_PREFIX=dkb STENO_NET=198.51.100 "$steno/up.sh" "$work" >/dev/null
# Eight loops of the bulk trace into each sensor: ~100 MB each.
"$steno/replay.sh" -w "$work" a="$bulk" b="$bulk" -- --topspeed --loop=8 | grep REPLAYED
# shellcheck disable=SC1091
source "$work/instances.env"
tls=(--cacert "$STENO_CA_CERT" --cert "$STENO_CLIENT_CERT" --key "$STENO_CLIENT_KEY")

port=18191
cat > "$dir/docket.toml" <<EOF
listen = "127.0.0.1:$port"
spool_dir = "$dir/spool"
free_bytes = 0
time_window = 1
[[stenographer]]
name = "a"
host = "${STENO_A_URL#https://}"
cert = "$STENO_CLIENT_CERT"
key = "$STENO_CLIENT_KEY"
ca = "$STENO_CA_CERT"
[[stenographer]]
name = "b"
host = "${STENO_B_URL#https://}"
cert = "$STENO_CLIENT_CERT"
key = "$STENO_CLIENT_KEY"
ca = "$STENO_CA_CERT"
EOF
# host = "198.51.100.2:1234" → host and port.
sed -i -E 's/^host = "([0-9.]+):([0-9]+)"/host = "\1"\nport = \2/' "$dir/docket.toml"
"$docket" serve -c "$dir/docket.toml" > "$dir/docket.out" 2> "$dir/docket.err" &
dpid=$!; pids+=("$dpid")
for _ in $(seq 100); do grep -q listening "$dir/docket.out" 2>/dev/null && break; sleep 0.1; done
base="http://127.0.0.1:$port/app/docket"

peak_file="$dir/peak"
echo 0 > "$peak_file"
( while kill -0 "$dpid" 2>/dev/null; do
      v=$(awk '/^RssAnon/ {print $2}' /proc/"$dpid"/status 2>/dev/null || echo 0)
      [ "${v:-0}" -gt "$(cat "$peak_file")" ] && echo "$v" > "$peak_file"
      sleep 0.01
  done ) &
pids+=($!)

now=$(date +%s)
after=$((now - 900))
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo
echo "== 1+2. Docket streaming (fresh job per run: the window's end moves by a second)"
# Time to the first whole packet record (pcap header + record header + data), not to the
# response headers, then the rest of the body to its end.
first_packet() {
    python3 - "$1" <<'PY'
import struct, sys, time, urllib.request
t0 = time.monotonic()
r = urllib.request.urlopen(sys.argv[1])
buf = b""
while len(buf) < 40:
    b = r.read1(65536)
    if not b:
        break
    buf += b
need = 40 + struct.unpack("<I", buf[32:36])[0] if len(buf) >= 40 else 0
while len(buf) < need:
    b = r.read1(65536)
    if not b:
        break
    buf += b
first = time.monotonic() - t0
n = len(buf)
while True:
    b = r.read1(1 << 20)
    if not b:
        break
    n += len(b)
print(f"{first:.6f} {time.monotonic() - t0:.6f} {n}")
PY
}
for ((i = 0; i < runs; i++)); do
    first_packet "$base/q/after/@$after/before/@$((now + 60 + i))/pcap"
done > "$dir/docket-runs"
sed 's/^/  first-packet_s total_s bytes (python client): /' "$dir/docket-runs"
# Throughput with curl (a faster client than the Python one above), fresh jobs again.
for ((i = 0; i < runs; i++)); do
    curl -sS -o /dev/null -w '%{time_total} %{size_download}\n' \
        "$base/q/after/@$after/before/@$((now + 120 + i))/pcap"
done > "$dir/docket-curl"

echo "== Docket-py's way: both full answers (parallel curls), then mergecap"
q="after $(date -u -d @"$after" +%Y-%m-%dT%H:%M:%SZ) and before $(date -u -d @"$((now + 60))" +%Y-%m-%dT%H:%M:%SZ)"
for ((i = 0; i < runs; i++)); do
    start=$(date +%s.%N)
    curl -sS "${tls[@]}" --data-binary "$q" "$STENO_A_URL/query" -o "$dir/a.pcap" &
    ca=$!
    curl -sS "${tls[@]}" --data-binary "$q" "$STENO_B_URL/query" -o "$dir/b.pcap" &
    cb=$!
    wait "$ca" "$cb"
    fetched=$(date +%s.%N)
    mergecap -F pcap -w "$dir/merged.pcap" "$dir/a.pcap" "$dir/b.pcap"
    end=$(date +%s.%N)
    echo "$start $fetched $end $(stat -c %s "$dir/a.pcap") $(stat -c %s "$dir/b.pcap")"
done > "$dir/py-runs"

python3 - "$dir/docket-runs" "$dir/py-runs" "$(cat "$peak_file")" "$dir/docket-curl" <<'EOF'
import sys, statistics as st
d = [tuple(map(float, l.split())) for l in open(sys.argv[1])]
p = [tuple(map(float, l.split())) for l in open(sys.argv[2])]
c = [tuple(map(float, l.split())) for l in open(sys.argv[4])]
ttfb = st.median(x[0] for x in d)
dtotal = st.median(x[0] for x in c)
dbytes = st.median(x[1] for x in c)
fetch = st.median(x[1] - x[0] for x in p)
pyready = st.median(x[2] - x[0] for x in p)
pbytes = st.median(x[3] + x[4] for x in p)
print(f"  result: {dbytes/1e6:.0f} MB from Docket; {pbytes/1e6:.0f} MB from the two sensors directly")
print(f"  first packet: Docket {ttfb*1000:.0f} ms vs Docket-py's way {pyready*1000:.0f} ms "
      f"(fetch {fetch*1000:.0f} ms + mergecap): {pyready/ttfb:.0f}x sooner")
print(f"  throughput: Docket {dbytes/dtotal/1e6:.0f} MB/s vs two direct curls in parallel "
      f"{pbytes/fetch/1e6:.0f} MB/s = {dbytes/dtotal/(pbytes/fetch)*100:.0f}%")
print(f"  peak RssAnon of docket: {int(sys.argv[3])/1024:.1f} MiB")
EOF
