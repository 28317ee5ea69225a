#!/usr/bin/env bash
# Whole-system benchmark of the front door (TLS + auth), against nginx over TLS, in one run:
#
# 1. Throughput of a ~1 GiB result over HTTPS on loopback: Docket live (a fresh job, HTTP
#    Basic with a bcrypt user) and on a spool hit, vs nginx (Debian's nginx-light, started
#    here) serving the same file over HTTPS with the same certificate. Both with TLS 1.3 and
#    the cipher each server prefers (printed).
# 2. Time to first byte of a new TLS connection (handshake + request + first byte).
# 3. TLS handshakes per second, full (`openssl s_time -new`) and resumed (`-reuse`), Docket
#    (rustls, ring) vs nginx (OpenSSL), same P-256 certificate.
#
# Usage: benches/frontdoor.sh     (RUNS=3; BENCH_DIR to keep/reuse the data; SECONDS_EACH=5)
# Needs: nginx, curl, openssl, htpasswd, editcap. Traffic stays on 127.0.0.1; every process
# started here is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-3}"
secs="${SECONDS_EACH:-5}"
bulk="${DOCKET_PCAPS:-../shared/pcaps}/bulk/mix-19-real-captures-10min.pcap"
command -v nginx >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light >/dev/null; }
command -v htpasswd >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -q apache2-utils >/dev/null; }
# DOCKET_BIN runs a given build instead (e.g. an older commit's, for a before/after figure).
if [ -n "${DOCKET_BIN:-}" ]; then docket="$DOCKET_BIN"; else cargo build --release -q; docket="$PWD/target/release/docket"; fi
dir="${BENCH_DIR:-$(mktemp -d /tmp/docket-fd.XXXXXX)}"
mkdir -p "$dir/data" "$dir/spool" "$dir/nginx" "$dir/pki"
chmod 755 "$dir" "$dir/spool"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ "${KEEP:-0}" = 1 ] || [ -n "${BENCH_DIR:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT

# ~1 GiB of rotated capture files (as benches/gateway.sh).
reps=$(( 1073741824 / $(stat -c %s "$bulk") ))
if [ ! -e "$dir/data/rep-$(printf %03d $((reps - 1))).pcap" ]; then
    for ((r = 0; r < reps; r++)); do
        editcap -F pcap -t $((r * 700)) "$bulk" "$dir/data/rep-$(printf %03d $r).pcap"
    done
fi
echo "data: $reps files, $(du -sm "$dir/data" | cut -f1) MiB"
after=2023-06-01T00:00:00Z
before=2023-06-02T12:00:00Z

# One self-signed P-256 certificate for both servers.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$dir/pki/key.pem" -out "$dir/pki/cert.pem" 2>/dev/null
chmod 644 "$dir/pki/"*
htpasswd -cbB "$dir/htpasswd" bench bench-secret 2>/dev/null

port=18191
cat > "$dir/docket.toml" <<EOF
listen = "127.0.0.1:$port"
spool_dir = "$dir/spool"
free_bytes = 0
time_window = 1
[tls]
cert = "$dir/pki/cert.pem"
key = "$dir/pki/key.pem"
[auth]
htpasswd = "$dir/htpasswd"
[[local]]
name = "rotated"
path = "$dir/data"
EOF
"$docket" serve -c "$dir/docket.toml" > "$dir/docket.out" 2> "$dir/docket.err" &
dpid=$!; pids+=("$dpid")
for _ in $(seq 100); do grep -q listening "$dir/docket.out" 2>/dev/null && break; sleep 0.1; done
base="https://127.0.0.1:$port/app/docket"
c() { curl -sS --cacert "$dir/pki/cert.pem" -u bench:bench-secret "$@"; }
c "$base/q/host/192.0.2.1/after/$after/before/$before/pcap" -o /dev/null   # warm the index

cat > "$dir/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log;
events { worker_connections 64; }
http {
    access_log off;
    sendfile on;
    ssl_session_cache shared:SSL:1m;
    ssl_session_tickets on;
    server {
        listen 127.0.0.1:$((port + 1)) ssl;
        ssl_certificate $dir/pki/cert.pem;
        ssl_certificate_key $dir/pki/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        root $dir/spool;
    }
}
EOF
nginx -c "$dir/nginx/nginx.conf" -p "$dir/nginx" &
npid=$!; pids+=("$npid")
sleep 0.5
nginx_base="https://127.0.0.1:$((port + 1))"

fresh() {
    local id
    id=$(c "$base/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    c -X DELETE "$base/$id" -o /dev/null || true
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
speed() { c -o /dev/null -w '%{speed_download}\n' "$@"; }
cipher() { curl -sS -v --cacert "$dir/pki/cert.pem" -u bench:bench-secret -o /dev/null "$1" 2>&1 | grep -m1 "SSL connection using" | sed 's/.*using //'; }

echo
echo "== 1. ~1 GiB result over HTTPS on loopback (TLS 1.3, HTTP/1.1)"
qa="q/after/$after/before/$before"
for ((i = 0; i < runs; i++)); do fresh "$qa"; speed --http1.1 "$base/$qa/pcap"; done | median > "$dir/live"
for ((i = 0; i < runs; i++)); do speed --http1.1 "$base/$qa/pcap"; done | median > "$dir/hit"
for ((i = 0; i < runs; i++)); do fresh "$qa"; speed --http2 "$base/$qa/pcap"; done | median > "$dir/live-h2"
id=$(c "$base/$qa" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
for ((i = 0; i < runs; i++)); do speed --http1.1 "$nginx_base/$id.pcap"; done | median > "$dir/res-nginx"
echo "  docket cipher: $(cipher "$base/healthz"); nginx cipher: $(cipher "$nginx_base/$id.pcap")"
python3 - "$(cat "$dir/live")" "$(cat "$dir/hit")" "$(cat "$dir/live-h2")" "$(cat "$dir/res-nginx")" "$(stat -c %s "$dir/spool/$id.pcap")" <<'EOF'
import sys
live, hit, h2, ng, size = map(float, sys.argv[1:])
print(f"  result {size/2**20:.0f} MiB")
print(f"  docket live (fresh job):    {live/1e6:.0f} MB/s = {live/ng*100:.0f}% of nginx")
print(f"  docket live over HTTP/2:    {h2/1e6:.0f} MB/s = {h2/ng*100:.0f}% of nginx")
print(f"  docket spool hit:           {hit/1e6:.0f} MB/s = {hit/ng*100:.0f}% of nginx")
print(f"  nginx (HTTPS, same file):   {ng/1e6:.0f} MB/s")
EOF

echo
echo "== 2. time to first byte on a new TLS connection (median of $((runs * 5)))"
qs="q/host/192.0.2.1/after/$after/before/$before"
for ((i = 0; i < runs * 5; i++)); do c -o /dev/null -w '%{time_starttransfer}\n' "$base/healthz"; done | median > "$dir/ttfb-d"
for ((i = 0; i < runs * 5; i++)); do c -o /dev/null -w '%{time_starttransfer}\n' "$base/$qs"; done | median > "$dir/ttfb-dq"
for ((i = 0; i < runs * 5; i++)); do c -o /dev/null -r 0-0 -w '%{time_starttransfer}\n' "$nginx_base/$id.pcap"; done | median > "$dir/ttfb-n"
python3 - "$(cat "$dir/ttfb-d")" "$(cat "$dir/ttfb-dq")" "$(cat "$dir/ttfb-n")" <<'EOF'
import sys
d, dq, n = map(float, sys.argv[1:])
print(f"  docket healthz: {d*1000:.1f} ms; docket job JSON (bcrypt login): {dq*1000:.1f} ms; nginx: {n*1000:.1f} ms")
EOF

echo
echo "== 3. TLS handshakes per second (openssl s_time, ${secs}s each, TLS 1.3 then 1.2)"
hs() { # port, flags -> connections per wall-clock second
    openssl s_time -connect "127.0.0.1:$1" -time "$secs" "${@:2}" 2>/dev/null \
        | awk '/connections in [0-9.]+ real seconds/ {printf "%.0f\n", $1/$4; exit}'
}
for v in -tls1_3 -tls1_2; do
    dn=$(hs "$port" -new "$v"); dr=$(hs "$port" -reuse "$v")
    nn=$(hs $((port + 1)) -new "$v"); nr=$(hs $((port + 1)) -reuse "$v")
    python3 - "$v" "$dn" "$dr" "$nn" "$nr" <<'EOF'
import sys
v = sys.argv[1]; dn, dr, nn, nr = map(float, sys.argv[2:])
print(f"  {v}: docket new {dn:.0f}/s, resumed {dr:.0f}/s ({dr/dn:.1f}x); nginx new {nn:.0f}/s, resumed {nr:.0f}/s ({nr/nn:.1f}x); docket/nginx new {dn/nn*100:.0f}%, resumed {dr/nr*100:.0f}%")
EOF
done
