#!/usr/bin/env bash
# Bounded whole-system soak test of `docket serve`: mixed clients, a changing capture directory
# and a sensor that dies and comes back, for SOAK_SECONDS; then a summary and a verdict.
#
# Set up (in a temporary directory, or BENCH_DIR):
#   - a local capture directory `local`: ~20 rotated pcap files, the bulk trace shifted by 600 s
#     each (consecutive in time, 60 s overlap), as `tcpdump -G` would leave them;
#   - a Stenographer-like sensor `flaky` (tests/fault-sensor.py, mode ok, HTTPS with client
#     certificates from an openssl CA made here) serving two real minutes of that trace;
#   - Docket with HTTP Basic (one bcrypt user), an audit log, `free_bytes = 0`, spool cleanup
#     every 10 s of files unused for 2 min, and 127.0.0.1 as a trusted proxy so that the
#     wrong-password client (X-Forwarded-For 198.51.100.x, a header only) locks out its own
#     addresses and not the good clients.
# Load (SOAK_WORKERS threads, default 6, Python stdlib; curl for slow readers): new jobs (random
#   windows inside the directory's current time range, all sensors or `sensor/local`, some by
#   POST), joiners (3 clients on one new query at once: same bytes), hits, Range requests on
#   `<id>/merged.pcap`, slow readers (curl --limit-rate 200k --max-time 5), clients leaving
#   after ~1000 bytes, wrong passwords, API reads. Every capture is checked: whole records, in
#   time order, inside the window, as many packets as the job says.
#   Expected: 200/206 for good requests, 401/429 for wrong passwords, 404/410 for finished jobs
#   since removed by cleanup, 503 when busy, curl timeouts for slow readers, and `flaky` failing
#   (job Partial naming it) while it is down. Anything else is an ERROR.
# Chaos: every ~20 s in the local directory, in turn: add the next rotated file, truncate a file in
#   place to half its size, delete the oldest; every ~60 s kill the sensor (by PID) and start it
#   again on the same port 10 s later.
# Sampling every 10 s of the docket process: RssAnon, open fds, threads, spool bytes, spool
#   files, and "stale" bytes (complete spool files unused for longer than expire_time +
#   cleanup_period + 15 s, which cleanup should have removed) -> samples.tsv.
# Verdict: RssAnon, fds and threads are flat if the mean of the last third of the samples is
#   within +20 % (or +16 fds / +8 threads, whichever is larger) of the middle third's; the
#   spool is bounded if no stale bytes were ever seen (and, for runs of at least 3x(expire +
#   cleanup), if its last third is within +20 % or +64 MiB of its middle third). Exit 1 on any
#   unexpected outcome, a panic, docket dying, or a metric not flat; 0 otherwise. Docket's
#   ERROR/WARN log lines are counted and shown. A run of under 60 s (fewer than 6 samples)
#   cannot be judged and fails.
#
# Usage: benches/soak.sh    (SOAK_SECONDS=1800, SOAK_WORKERS=6; BENCH_DIR to keep the files;
#                            DOCKET_BIN to run a given build instead of `cargo build --release`)
# Needs: editcap, openssl, htpasswd, curl, python3 (tshark optional). Traffic goes to
# 127.0.0.1 only; every process started here is stopped by PID, and every loop ends by the
# deadline.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
soak="${SOAK_SECONDS:-1800}"
workers="${SOAK_WORKERS:-6}"
bulk="${DOCKET_PCAPS:-../shared/pcaps}/bulk/mix-19-real-captures-10min.pcap"
bulk="$(cd "$(dirname "$bulk")" && pwd)/$(basename "$bulk")"
expire=120     # expire_time = "2m"
period=10      # cleanup_period = "10s"
files=20       # rotated files at the start
export TZ=UTC
for tool in editcap openssl htpasswd curl python3; do
    command -v "$tool" >/dev/null || { echo "soak: $tool is needed" >&2; exit 2; }
done
if [ -n "${DOCKET_BIN:-}" ]; then docket="$DOCKET_BIN"; else cargo build --release -q; docket="$PWD/target/release/docket"; fi
# A given BENCH_DIR is kept (and what this script puts in it is replaced on every run); a
# temporary one is removed at the end.
if [ -n "${BENCH_DIR:-}" ]; then dir="$BENCH_DIR"; keep=1; else dir=$(mktemp -d /tmp/docket-soak.XXXXXX); keep=0; fi
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
rm -rf "$dir/data" "$dir/spool" "$dir/tls"
rm -f "$dir"/{docket.toml,docket.out,docket.err,audit.log,htpasswd,flaky.pcap,sensor.out,sensor.err} \
    "$dir"/{chaos.tsv,samples.tsv,load.py,load.json,load.err,summary.py}
mkdir -p "$dir/data" "$dir/spool" "$dir/tls"

pids=()
dpid=""
spid=""
cleanup() {
    local p live=()
    for p in "${pids[@]}"; do
        if kill -0 "$p" 2>/dev/null; then kill "$p" 2>/dev/null || true; live+=("$p"); fi
    done
    for p in "${live[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
    done
    if [ "$keep" = 1 ]; then echo "soak: files kept in $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT
forget() { # forget a PID that has been stopped and reaped
    local p keep_pids=()
    for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep_pids+=("$p"); done
    pids=("${keep_pids[@]}")
}

# -- data: rotated files rot-NNNN.pcap, file N starting at 2023-06-01 12:00:00 + 600*N s.
rotated() { editcap -F pcap -t $(($1 * 600)) "$bulk" "$dir/data/rot-$(printf %04d "$1").pcap"; }
for ((i = 0; i < files; i++)); do rotated "$i"; done
next_file=$files
# The sensor's capture: two real minutes of the trace, placed inside rot-0010.pcap's time.
editcap -F pcap -A "2023-06-01 12:03:00" -B "2023-06-01 12:05:00" "$bulk" "$dir/flaky.tmp"
editcap -F pcap -t 6000 "$dir/flaky.tmp" "$dir/flaky.pcap"
rm -f "$dir/flaky.tmp"
echo "data: $files files, $(du -sm "$dir/data" | cut -f1) MiB; sensor capture $(du -k "$dir/flaky.pcap" | cut -f1) KiB"
# Hosts to filter on: the busiest addresses of the trace.
hosts=""
if command -v tshark >/dev/null; then
    hosts=$(tshark -r "$bulk" -T fields -e ip.src 2>/dev/null | grep -v '^$' | sort | uniq -c \
        | sort -rn | head -10 | awk '{print $2}' | paste -sd, || true)
fi
[ -n "$hosts" ] || hosts="10.0.2.15,212.199.202.9,10.0.0.6,192.168.1.178,192.168.1.7,10.8.0.1"

# -- PKI: one CA; the sensor's server certificate (127.0.0.1) and Docket's client certificate.
ossl() { (cd "$dir/tls" && openssl "$@") >>"$dir/tls/openssl.log" 2>&1; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key \
    -out ca.pem -days 2 -subj "/CN=docket soak CA"
issue() { # stem cn extensions
    printf '%b' "$3" > "$dir/tls/$1.ext"
    ossl ecparam -name prime256v1 -genkey -noout -out "$1.key"
    ossl req -new -key "$1.key" -out "$1.csr" -subj "/O=Docket soak/CN=$2"
    ossl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$1.pem" -days 2 \
        -extfile "$1.ext"
}
issue sensor 127.0.0.1 "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
issue docket docket "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n"

# -- users: one bcrypt user.
user=soak
password="soak-$RANDOM$RANDOM"
htpasswd -nbB "$user" "$password" | grep . > "$dir/htpasswd"

# -- ports: two free ones on 127.0.0.1.
read -r port sport < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')

start_sensor() {
    python3 "$repo/tests/fault-sensor.py" --mode ok --pcap "$dir/flaky.pcap" \
        --cert "$dir/tls/sensor.pem" --key "$dir/tls/sensor.key" --ca "$dir/tls/ca.pem" \
        --port "$sport" >> "$dir/sensor.out" 2>> "$dir/sensor.err" &
    spid=$!; pids+=("$spid")
    for _ in $(seq 100); do
        [ "$(grep -c '^PORT' "$dir/sensor.out" 2>/dev/null || true)" -gt "${1:-0}" ] && return 0
        kill -0 "$spid" 2>/dev/null || break
        sleep 0.1
    done
    echo "soak: the sensor did not start (see $dir/sensor.err)" >&2
    return 1
}
stop_sensor() {
    kill "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
    forget "$spid"
    spid=""
}
start_sensor 0

cat > "$dir/docket.toml" <<EOF
listen = "127.0.0.1:$port"
spool_dir = "$dir/spool"
free_bytes = 0
expire_time = "2m"
cleanup_period = "10s"
shutdown_grace = "5s"
[http]
trusted_proxies = ["127.0.0.1"]
[auth]
htpasswd = "$dir/htpasswd"
max_failures = 10
failure_window = 60
[audit]
path = "$dir/audit.log"
[[local]]
name = "local"
path = "$dir/data"
[[stenographer]]
name = "flaky"
host = "127.0.0.1"
port = $sport
cert = "$dir/tls/docket.pem"
key = "$dir/tls/docket.key"
ca = "$dir/tls/ca.pem"
connect_timeout = 5
first_byte_timeout = 30
idle_timeout = 20
total_timeout = 120
EOF
"$docket" serve -c "$dir/docket.toml" > "$dir/docket.out" 2> "$dir/docket.err" &
dpid=$!; pids+=("$dpid")
for _ in $(seq 100); do grep -q listening "$dir/docket.out" 2>/dev/null && break; sleep 0.1; done
grep -q listening "$dir/docket.out" || { echo "soak: docket did not start:" >&2; cat "$dir/docket.err" >&2; exit 1; }
base="http://127.0.0.1:$port/app/docket"
# Warm the index (the first query of a process indexes the directory).
curl -sS -u "$user:$password" -o /dev/null "$base/q/host/192.0.2.1/after/2023-06-01T12:00:00Z/before/2023-06-01T12:01:00Z/sensor/local/pcap"

# -- the load: written here, run until the deadline.
cat > "$dir/load.py" <<'PYEOF'
#!/usr/bin/env python3
"""Soak load for `docket serve` (stdlib only): mixed clients until a deadline, every outcome
counted by kind; outcomes that are not expected are ERRORs (with examples)."""
import argparse
import base64
import collections
import hashlib
import http.client
import json
import os
import random
import re
import struct
import subprocess
import threading
import time
from datetime import datetime, timezone

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--prefix", default="/app/docket/")
ap.add_argument("--user", required=True)
ap.add_argument("--password", required=True)
ap.add_argument("--data", required=True)
ap.add_argument("--chaos", required=True)
ap.add_argument("--deadline", type=float, required=True)
ap.add_argument("--workers", type=int, default=6)
ap.add_argument("--hosts", default="")
ap.add_argument("--flaky", default="flaky")
ap.add_argument("--out", required=True)
A = ap.parse_args()

BASE = 1685620800  # 2023-06-01T12:00:00Z: rot-N.pcap starts at BASE + 600 N, lasts 660 s
GOOD = "Basic " + base64.b64encode(f"{A.user}:{A.password}".encode()).decode()
BAD = "Basic " + base64.b64encode(f"{A.user}:wrong-{A.password}".encode()).decode()
HOSTS = [h for h in A.hosts.split(",") if h]
FINAL = {"Completed", "Partial", "Failed", "Cancelled"}
T0 = time.time()

lock = threading.Lock()
counts = collections.Counter()  # (kind, outcome, expected) -> n
errors = []                     # the first examples
n_errors = 0
flaky_reasons = collections.Counter()
finished = []                   # finished (or abandoned) queries: dict(q, id, size, packets)
used = set()                    # query paths already asked for
volume = collections.Counter()  # bytes received by kind


def record(kind, outcome, ok, detail=None):
    global n_errors
    with lock:
        counts[(kind, outcome, bool(ok))] += 1
        if not ok:
            n_errors += 1
            if len(errors) < 40:
                errors.append({"t": round(time.time() - T0, 1), "kind": kind,
                               "outcome": outcome, "detail": (detail or "")[:700]})


class Q:
    """A query: its URL clauses and its exact window."""

    def __init__(self, after, before, host=None, local=False):
        self.after, self.before, self.host, self.local = after, before, host, local
        c = ["after", iso(after), "before", iso(before)]
        if host:
            c += ["host", host]
        if local:
            c += ["sensor", "local"]
        self.path = "q/" + "/".join(c)

    def json(self):
        d = {"after": iso(self.after), "before": iso(self.before)}
        if self.host:
            d["host"] = self.host
        if self.local:
            d["sensor"] = ["local"]
        return json.dumps(d)


def iso(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def data_range():
    idx = sorted(int(m.group(1)) for m in
                 (re.match(r"rot-(\d+)\.pcap$", f) for f in os.listdir(A.data)) if m)
    if not idx:
        return BASE, BASE + 660
    return BASE + 600 * idx[0], BASE + 600 * idx[-1] + 660


def fresh_query():
    """A query not asked before: a window of 1-6 minutes inside the directory's range."""
    lo, hi = data_range()
    for _ in range(50):
        minutes = random.choice([1, 1, 1, 2, 2, 3, 5])
        first = -(-lo // 60)
        last = hi // 60 - minutes
        start = random.randint(first, max(first, last)) * 60
        host = random.choice(HOSTS) if HOSTS and random.random() < 0.35 else None
        q = Q(start, start + 60 * minutes, host, random.random() < 0.3)
        with lock:
            if q.path not in used:
                used.add(q.path)
                return q
    return q


def pick_finished(with_size=False):
    with lock:
        c = [f for f in finished if f["size"] is not None] if with_size else list(finished)
    return random.choice(c) if c else None


def remember(entry):
    with lock:
        for f in finished:
            if f["q"].path == entry["q"].path:
                f.update(entry)
                return
        finished.append(entry)
        if len(finished) > 300:
            del finished[0]


def request(path, method="GET", headers=None, body=None, timeout=120, auth=GOOD):
    c = http.client.HTTPConnection("127.0.0.1", A.port, timeout=timeout)
    h = {"Authorization": auth}
    h.update(headers or {})
    c.request(method, A.prefix + path, body=body, headers=h)
    return c, c.getresponse()


def fetch(path, headers=None, limit=None, timeout=120, auth=GOOD, method="GET", body=None):
    """(status or None, response, body bytes, problem): problem is None if the body (or
    `limit` bytes of it) arrived whole."""
    c = None
    try:
        c, r = request(path, method, headers, body, timeout, auth)
        try:
            data = r.read(limit) if limit else r.read()
            problem = None
        except http.client.IncompleteRead as e:
            data, problem = e.partial, f"body cut off after {len(e.partial)} bytes"
        except (OSError, http.client.HTTPException) as e:
            data, problem = b"", f"body failed: {type(e).__name__}: {e}"
        return r.status, r, data, problem
    except (OSError, http.client.HTTPException) as e:
        return None, None, b"", f"{type(e).__name__}: {e}"
    finally:
        if c:
            c.close()


def id_of(r):
    m = re.search(r'filename="([0-9a-f]+)\.pcap"', r.getheader("Content-Disposition") or "")
    return m.group(1) if m else None


def check_pcap(data, after, before):
    """(why it is wrong or None, packets): whole records, in time order, inside the window."""
    if len(data) < 24:
        return f"{len(data)} bytes: no pcap header", 0
    magic = data[:4]
    if magic == b"\n\r\r\n":
        return None, None  # pcapng: not walked here
    kind = {b"\xd4\xc3\xb2\xa1": ("<", 1000), b"\x4d\x3c\xb2\xa1": ("<", 1),
            b"\xa1\xb2\xc3\xd4": (">", 1000), b"\xa1\xb2\x3c\x4d": (">", 1)}.get(magic)
    if not kind:
        return f"bad magic {magic.hex()}", 0
    rec = struct.Struct(kind[0] + "IIII")
    mul, lo, hi = kind[1], after * 10**9, before * 10**9
    off, n, prev, end = 24, 0, -1, len(data)
    while off < end:
        if off + 16 > end:
            return f"partial record header at byte {off}", n
        s, f, incl, _ = rec.unpack_from(data, off)
        t = s * 10**9 + f * mul
        if t < prev:
            return f"packet {n + 1} steps back in time", n
        if not lo <= t < hi:
            return f"packet {n + 1} at {t / 1e9:.6f} outside [{after}, {before})", n
        prev, off, n = t, off + 16 + incl, n + 1
    if off != end:
        return f"partial record data at the end ({end} bytes, record ends at {off})", n
    return None, n


def down_intervals():
    """When the chaos loop had the sensor down: [(kill time, up time)]."""
    iv, start = [], None
    try:
        with open(A.chaos) as f:
            lines = f.read().splitlines()
    except OSError:
        return iv
    for line in lines:
        p = line.split("\t")
        if len(p) < 2:
            continue
        if p[1] == "flaky-kill":
            start = float(p[0])
        elif p[1] == "flaky-up" and start is not None:
            iv.append((start, float(p[0])))
            start = None
    if start is not None:
        iv.append((start, float("inf")))
    return iv


def flaky_was_down(t0, t1, margin=3.0):
    return any(a - margin <= t1 and t0 <= b + margin for a, b in down_intervals())


def parse_time(s):
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


def job_status(jid):
    """The job's final status (polled up to ~10 s), or (None, why)."""
    st = None
    for _ in range(50):
        status, _, data, problem = fetch("status/" + jid, timeout=30)
        if status != 200:
            return None, f"status/{jid}: {status} {problem or data[:200]!r}"
        try:
            st = json.loads(data).get(jid)
        except ValueError as e:
            return None, f"status/{jid}: not JSON: {e}"
        if st is None:
            return None, f"status/{jid}: job not listed"
        if st.get("state") in FINAL:
            return st, None
        time.sleep(0.2)
    return st, None


def brief(st):
    if not st:
        return "no status"
    ups = "; ".join(f"{u.get('name')}={u.get('state')} {u.get('error') or ''}".strip()
                    for u in st.get("upstreams", []))
    return f"state {st.get('state')} [{ups}] events {[e.get('msg') for e in st.get('events', [])][-4:]}"


def judge(st, t0, t1):
    """(outcome, expected, detail) of a job's final status."""
    state = st.get("state")
    fails = [u for u in st.get("upstreams", []) if str(u.get("state")).lower() == "failed"]
    names = sorted(str(u.get("name")) for u in fails)
    if state == "Completed" and not fails:
        return "Completed", True, None
    times = [t for t in (parse_time(e.get("datetime")) for e in st.get("events", [])) if t]
    t0, t1 = min(times + [t0]), max(times + [t1])
    if state == "Partial" and names == [A.flaky]:
        why = str(fails[0].get("error") or "")
        with lock:
            flaky_reasons[re.sub(r"\d+", "N", why)[:90]] += 1
        if flaky_was_down(t0, t1):
            return "Partial (flaky down)", True, None
        return "Partial (flaky failed while up)", False, brief(st)
    return str(state), False, brief(st)


def verify(kind, q, status, r, data, problem, t0, new, known_id=None):
    """Checks one capture download; records its outcome. Returns the job entry if whole."""
    if status is None:
        record(kind, "no answer", False, f"{q.path}: {problem}")
        return None
    if status == 503:
        record(kind, "503 busy", True)
        return None
    if status in (404, 410) and not new:
        record(kind, f"{status} removed", True)
        return None
    if status != 200:
        record(kind, str(status), False, f"{q.path}: {data[:300]!r}")
        return None
    with lock:
        volume[kind] += len(data)
    jid = id_of(r)
    if not jid:
        record(kind, "200 without id", False, f"{q.path}: {r.getheader('Content-Disposition')}")
        return None
    if known_id and jid != known_id:
        record(kind, "200 other job id", False, f"{q.path}: {jid} != {known_id}")
    st, why = job_status(jid)
    if problem:
        record(kind, "200 cut off", False, f"{q.path} job {jid}: {problem}; {brief(st) if st else why}")
        return None
    bad, n = check_pcap(data, q.after, q.before)
    if bad:
        record(kind, "200 bad capture", False, f"{q.path} job {jid}: {bad}")
        return None
    if st is None:
        record(kind, "200 no status", False, f"{q.path} job {jid}: {why}")
        return None
    outcome, ok, detail = judge(st, t0, time.time())
    if ok and n is not None and n != st.get("packets"):
        ok, detail = False, f"job {jid}: {n} packets received, status says {st.get('packets')}"
        outcome += " packets differ"
    record(kind, "200 " + outcome, ok, detail and f"{q.path} job {jid}: {detail}")
    return {"q": q, "id": jid, "size": len(data), "packets": n, "sha": hashlib.sha256(data).hexdigest()} if ok else None


def act_new():
    q = fresh_query()
    t0 = time.time()
    if random.random() < 0.2:
        # POST the same clauses as JSON, then follow the job's capture.
        status, r, data, problem = fetch("q", method="POST", body=q.json(),
                                         headers={"Content-Type": "application/json"}, timeout=60)
        if status == 503:
            record("new", "503 busy", True)
            return
        if status != 200 or problem:
            record("new", f"POST {status}", False, f"{q.json()}: {problem or data[:300]!r}")
            return
        jid = json.loads(data)["id"]
        status, r, data, problem = fetch(f"{jid}/merged.pcap")
        e = verify("new", q, status, r, data, problem, t0, True, known_id=jid)
    else:
        status, r, data, problem = fetch(q.path + "/pcap")
        e = verify("new", q, status, r, data, problem, t0, True)
    if e:
        remember(e)


def act_join(k=3):
    q = fresh_query()
    barrier = threading.Barrier(k)
    out = [None] * k

    def one(i):
        try:
            barrier.wait(timeout=10)
        except threading.BrokenBarrierError:
            pass
        t0 = time.time()
        status, r, data, problem = fetch(q.path + "/pcap")
        out[i] = verify("join", q, status, r, data, problem, t0, True)

    ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(1, k)]
    for t in ts:
        t.start()
    one(0)
    for t in ts:
        t.join(timeout=300)
    whole = [e for e in out if e]
    if len({(e["id"], e["sha"]) for e in whole}) > 1:
        record("join", "joiners got different bytes", False,
               f"{q.path}: " + ", ".join(f"{e['id'][:8]} {e['size']} B {e['sha'][:12]}" for e in whole))
    if whole:
        remember(whole[0])


def act_hit():
    f = pick_finished()
    if not f:
        return act_new()
    t0 = time.time()
    status, r, data, problem = fetch(f["q"].path + "/pcap")
    e = verify("hit", f["q"], status, r, data, problem, t0, False, known_id=f["id"])
    if e:
        remember(e)


def act_range():
    f = pick_finished(with_size=True)
    if not f:
        return act_new()
    size = f["size"]
    a = random.randrange(0, max(1, size))
    b = min(size - 1, a + random.randint(0, 65535))
    status, r, data, problem = fetch(f"{f['id']}/merged.pcap", headers={"Range": f"bytes={a}-{b}"})
    if status is None or problem:
        record("range", f"{status} cut off", False, f"{f['id']} bytes={a}-{b}: {problem}")
    elif status == 206:
        cr = r.getheader("Content-Range") or ""
        m = re.match(r"bytes (\d+)-(\d+)/(\d+)$", cr)
        if not m or (int(m[1]), int(m[2])) != (a, b) or len(data) != b - a + 1:
            record("range", "206 wrong range", False, f"{f['id']} asked {a}-{b}: {cr!r}, {len(data)} B")
        else:
            record("range", "206", True)
            if int(m[3]) != size:
                # The job ran again (after cleanup) over data that changed since.
                with lock:
                    f["size"] = int(m[3])
    elif status == 200 and r.getheader("Content-Length") is None:
        record("range", "200 live (job running again)", True)
    elif status in (404, 410):
        record("range", f"{status} removed", True)
    elif status == 416:
        m = re.match(r"bytes \*/(\d+)$", r.getheader("Content-Range") or "")
        total = int(m[1]) if m else -1
        if 0 <= total <= a:
            record("range", "416 (job re-ran, smaller)", True)
            with lock:
                f["size"] = total or None
        else:
            record("range", "416", False, f"{f['id']} bytes={a}-{b} of {size}: total {total}")
    else:
        record("range", str(status), False, f"{f['id']} bytes={a}-{b}: {data[:300]!r}")


def act_early():
    f = pick_finished() if random.random() < 0.5 else None
    q = None if f else fresh_query()
    path = f"{f['id']}/merged.pcap" if f else q.path + "/pcap"
    status, r, data, problem = fetch(path, limit=1000)
    if status == 200 and not problem:
        record("early", "200 (left after 1000 B)", True)
        if q and id_of(r):
            # Abandoned by its only client: the job must still finish, for a later hit.
            remember({"q": q, "id": id_of(r), "size": None, "packets": None, "sha": None})
    elif status in (404, 410) and f:
        record("early", f"{status} removed", True)
    elif status == 503:
        record("early", "503 busy", True)
    else:
        record("early", f"{status}", False, f"{path}: {problem or data[:300]!r}")


def act_slow():
    f = pick_finished() if random.random() < 0.5 else None
    path = f"{f['id']}/merged.pcap" if f else fresh_query().path + "/pcap"
    try:
        p = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-u", f"{A.user}:{A.password}",
                            "--limit-rate", "200k", "--max-time", "5", "-w", "%{http_code}",
                            f"http://127.0.0.1:{A.port}{A.prefix}{path}"],
                           capture_output=True, text=True, timeout=30)
        rc, code, err = p.returncode, p.stdout.strip(), p.stderr.strip()
    except subprocess.TimeoutExpired:
        rc, code, err = -1, "000", "curl did not end within 30 s"
    if code == "200" and rc in (0, 28):
        record("slow", "200 whole" if rc == 0 else "200 curl timeout (28)", True)
    elif code in ("404", "410") and f and rc == 0:
        record("slow", f"{code} removed", True)
    elif code == "503" and rc == 0:
        record("slow", "503 busy", True)
    else:
        record("slow", f"{code} curl exit {rc}", False, f"{path}: {err[:300]}")


def act_badpw():
    xff = f"198.51.100.{random.randint(1, 3)}"
    status, r, data, problem = fetch("jobs", auth=BAD, headers={"X-Forwarded-For": xff}, timeout=30)
    if status in (401, 429) and not problem:
        record("badpw", str(status), True)
    else:
        record("badpw", str(status), False, f"from {xff}: {problem or data[:200]!r}")


def act_api():
    path = random.choice(["jobs?limit=50", "status", "ids", "urls", "stats", "healthz"])
    status, r, data, problem = fetch(path, timeout=60)
    if status == 200 and not problem:
        if path != "healthz":
            try:
                json.loads(data)
            except ValueError as e:
                record("api", "200 not JSON", False, f"{path}: {e}")
                return
        record("api", "200", True)
    else:
        record("api", str(status), False, f"{path}: {problem or data[:300]!r}")


ACTS = [(act_new, 25), (act_join, 8), (act_hit, 20), (act_range, 15), (act_early, 10),
        (act_slow, 8), (act_badpw, 10), (act_api, 6)]


def worker():
    fns, weights = zip(*ACTS)
    while time.time() < A.deadline:
        fn = random.choices(fns, weights)[0]
        try:
            fn()
        except Exception as e:  # a bug here must not end the soak silently
            record(fn.__name__[4:], "load script exception", False, f"{type(e).__name__}: {e}")
        time.sleep(random.uniform(0.2, 1.0))


def progress():
    while time.time() < A.deadline:
        time.sleep(min(30, max(0.1, A.deadline - time.time())))
        with lock:
            total = sum(counts.values())
            print(f"  [load] {time.time() - T0:6.0f} s  {total} requests, {n_errors} errors",
                  flush=True)


threads = [threading.Thread(target=worker, daemon=True) for _ in range(A.workers)]
for t in threads:
    t.start()
threading.Thread(target=progress, daemon=True).start()
for t in threads:
    t.join(timeout=max(1, A.deadline - time.time()) + 240)
stuck = sum(t.is_alive() for t in threads)
if stuck:
    record("load", f"{stuck} workers still busy 240 s after the deadline", False)
with lock:
    out = {
        "seconds": round(time.time() - T0, 1),
        "counts": [[k, o, e, n] for (k, o, e), n in sorted(counts.items())],
        "errors": errors,
        "n_errors": n_errors,
        "flaky_reasons": flaky_reasons.most_common(),
        "volume": dict(volume),
        "jobs_remembered": len(finished),
    }
with open(A.out, "w") as f:
    json.dump(out, f, indent=1)
PYEOF

t0=$(date +%s)
end=$((t0 + soak))
printf 'soak: %s s, %s workers, docket pid %s on 127.0.0.1:%s, sensor flaky on :%s, dir %s\n' \
    "$soak" "$workers" "$dpid" "$port" "$sport" "$dir"
python3 "$dir/load.py" --port "$port" --user "$user" --password "$password" --data "$dir/data" \
    --chaos "$dir/chaos.tsv" --deadline "$end" --workers "$workers" --hosts "$hosts" \
    --out "$dir/load.json" 2> "$dir/load.err" &
lpid=$!; pids+=("$lpid")

printf 't\trss_anon_kib\tfds\tthreads\tspool_bytes\tspool_files\tstale_bytes\n' > "$dir/samples.tsv"
sample() {
    local st rss thr fds sp nf stale now
    [ -r "/proc/$dpid/status" ] || return 0
    st=$(cat "/proc/$dpid/status" 2>/dev/null) || return 0
    rss=$(awk '/^RssAnon/ {print $2}' <<< "$st")
    thr=$(awk '/^Threads/ {print $2}' <<< "$st")
    fds=$(find "/proc/$dpid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    sp=$({ du -sb "$dir/spool" 2>/dev/null || true; } | cut -f1)
    now=$(date +%s)
    # Complete spool files (`<id>.pcap`) and their mtime (the spool's "last used").
    read -r nf stale < <(find "$dir/spool" -maxdepth 1 -name '*.pcap' -printf '%T@ %s\n' 2>/dev/null \
        | awk -v now="$now" -v lim=$((expire + period + 15)) \
            '{n++; if (now - $1 > lim) s += $2} END {printf "%d %d\n", n, s}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$((now - t0))" "$rss" "$fds" "$thr" "${sp:-0}" "$nf" "$stale" \
        | tee -a "$dir/samples.tsv" | awk -F'\t' '{printf "  [sample] %5d s  RssAnon %s KiB  fds %s  threads %s  spool %.1f MiB in %s files  stale %s B\n", $1, $2, $3, $4, $5/1048576, $6, $7}'
}
chaos_files() {
    local list n action f sz
    mapfile -t list < <(find "$dir/data" -maxdepth 1 -name 'rot-*.pcap' -printf '%f\n' | sort)
    n=${#list[@]}
    # In turn, so that a short run sees each: add, truncate, delete.
    action=$((chaos_n % 3)); chaos_n=$((chaos_n + 1))
    if [ "$n" -le 8 ]; then action=0; elif [ "$n" -ge 32 ]; then action=2; fi
    case $action in
        0) rotated "$next_file"
           printf '%s\tadd\trot-%04d.pcap\n' "$(date +%s.%N)" "$next_file" >> "$dir/chaos.tsv"
           next_file=$((next_file + 1)) ;;
        1) f=${list[RANDOM % n]}
           sz=$(stat -c %s "$dir/data/$f")
           truncate -s $((sz / 2)) "$dir/data/$f"
           printf '%s\ttruncate\t%s %s->%s\n' "$(date +%s.%N)" "$f" "$sz" "$((sz / 2))" >> "$dir/chaos.tsv" ;;
        2) rm -f "$dir/data/${list[0]}"
           printf '%s\tdelete\t%s\n' "$(date +%s.%N)" "${list[0]}" >> "$dir/chaos.tsv" ;;
    esac
}

died=0
chaos_n=0
next_sample=$t0
next_chaos=$((t0 + 20))
next_kill=$((t0 + 60))
restart_at=0
while :; do
    now=$(date +%s)
    [ "$now" -lt "$end" ] || break
    if ! kill -0 "$dpid" 2>/dev/null; then died=1; echo "soak: docket died at $((now - t0)) s" >&2; break; fi
    if [ "$now" -ge "$next_sample" ]; then sample; next_sample=$((next_sample + 10)); fi
    if [ "$now" -ge "$next_chaos" ]; then chaos_files; next_chaos=$((next_chaos + 20)); fi
    if [ "$now" -ge "$next_kill" ] && [ -n "$spid" ]; then
        printf '%s\tflaky-kill\t%s\n' "$(date +%s.%N)" "$spid" >> "$dir/chaos.tsv"
        stop_sensor
        restart_at=$((now + 10)); next_kill=$((next_kill + 60))
    fi
    if [ "$restart_at" -gt 0 ] && [ "$now" -ge "$restart_at" ]; then
        start_sensor "$(grep -c '^PORT' "$dir/sensor.out" || true)" || echo "soak: the sensor did not restart" >&2
        printf '%s\tflaky-up\t%s\n' "$(date +%s.%N)" "$spid" >> "$dir/chaos.tsv"
        restart_at=0
    fi
    sleep 1
done

# The load stops starting requests at the deadline; what is in flight ends within its timeouts.
for _ in $(seq 300); do kill -0 "$lpid" 2>/dev/null || break; sleep 1; done
lrc=0; kill -0 "$lpid" 2>/dev/null && { echo "soak: the load did not end; stopping it" >&2; kill "$lpid"; }
wait "$lpid" || lrc=$?
forget "$lpid"
if [ "$died" = 0 ] && ! kill -0 "$dpid" 2>/dev/null; then died=1; fi
[ "$died" = 1 ] || sample
# Stop docket as systemd would, and see that it exits cleanly.
drc=""
if [ "$died" = 0 ]; then
    kill -TERM "$dpid"
    for _ in $(seq 200); do kill -0 "$dpid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$dpid" 2>/dev/null && { echo "soak: docket still running 20 s after SIGTERM; killing it" >&2; kill -KILL "$dpid"; }
fi
drc=0; wait "$dpid" || drc=$?
forget "$dpid"
[ -z "$spid" ] || stop_sensor

cat > "$dir/summary.py" <<'PYEOF'
import collections, json, re, statistics, sys
d, soak, expire, period, died, drc, lrc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1", int(sys.argv[6]), int(sys.argv[7])
fail = []
print(f"\n== soak summary ({soak} s)")
try:
    load = json.load(open(f"{d}/load.json"))
except (OSError, ValueError) as e:
    load = {"counts": [], "errors": [], "n_errors": 0, "flaky_reasons": [], "volume": {}}
    fail.append(f"no load results ({e}; load exit {lrc})")
print("\nclients (kind: outcome count; ERROR marks the unexpected):")
by = collections.defaultdict(list)
for k, o, e, n in load["counts"]:
    by[k].append((o, e, n))
for k in ["new", "join", "hit", "range", "slow", "early", "badpw", "api", "load"]:
    if k in by:
        total = sum(n for _, _, n in by[k])
        print(f"  {k:6} {total:6}  " + ", ".join(f"{o}: {n}" + ("" if e else " ERROR") for o, e, n in sorted(by[k], key=lambda x: -x[2])))
vol = load.get("volume", {})
print("  bytes received: " + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in sorted(vol.items())))
if load.get("flaky_reasons"):
    print("  flaky failures (expected while it is down): " + "; ".join(f"{n}x {r}" for r, n in load["flaky_reasons"]))
ne = load.get("n_errors", 0)
print(f"\nunexpected outcomes (ERRORs): {ne}")
seen, shown = set(), []
for e in load["errors"]:  # the first of each kind of error, then the next ones
    if (e["kind"], e["outcome"]) not in seen:
        seen.add((e["kind"], e["outcome"])); shown.append(e)
shown += [e for e in load["errors"] if e not in shown]
for e in shown[:8]:
    print(f"  - at {e['t']} s, {e['kind']}: {e['outcome']}: {e['detail']}")
if ne:
    fail.append(f"{ne} unexpected outcomes")

log = open(f"{d}/docket.err", errors="replace").read().splitlines()
lvl = lambda w: [l for l in log if re.search(r"\s" + w + r"\s", l[:60])]
errs, warns = lvl("ERROR"), lvl("WARN")
panics = [l for l in log if "panicked" in l or "panic" in l.lower() and "ERROR" in l]
print(f"\ndocket log: {len(log)} lines, {len(errs)} ERROR, {len(warns)} WARN, {len(panics)} panic")
def groups(lines):
    c = collections.Counter(re.sub(r"\d+", "N", re.sub(r"^\S+\s+\S+\s+", "", l))[:160] for l in lines)
    for m, n in c.most_common(6):
        print(f"  {n:5}x {m}")
groups(errs); groups(warns)
for l in panics[:3]:
    print(f"  PANIC: {l[:300]}")
if panics:
    fail.append("docket panicked")
try:
    audit = [json.loads(l) for l in open(f"{d}/audit.log")]
    ends = [a for a in audit if a.get("event", "end") == "end"]
    c = collections.Counter((a.get("kind"), a.get("status"), a.get("result")) for a in ends)
    print(f"audit log: {len(audit) - len(ends)} requests started, {len(ends)} ended: "
          + ", ".join(f"{k}/{s}/{r}: {n}" for (k, s, r), n in sorted(c.items(), key=lambda x: -x[1])))
except (OSError, ValueError) as e:
    print(f"audit log: unreadable ({e})")

print("\nsamples (samples.tsv):")
rows = [l.split("\t") for l in open(f"{d}/samples.tsv").read().splitlines()]
for r in rows:
    print("  " + "\t".join(r))
s = [[int(x or 0) for x in r] for r in rows[1:]]
print("\nverdicts (mean of the last third of samples against the middle third):")
n = len(s)
if n < 6:
    fail.append(f"only {n} samples: too short to judge")
else:
    mid, last = s[n // 3: 2 * n // 3], s[2 * n // 3:]
    for col, name, unit, extra in [(1, "RssAnon", "KiB", 0), (2, "fds", "", 16), (3, "threads", "", 8)]:
        a = statistics.mean(r[col] for r in mid); b = statistics.mean(r[col] for r in last)
        ok = b <= max(a * 1.2, a + extra)
        print(f"  {name:8} middle {a:12.1f} {unit:3}  last {b:12.1f} {unit:3}  {(b / a - 1) * 100 if a else 0:+6.1f} %  {'flat' if ok else 'NOT FLAT'}")
        if not ok:
            fail.append(f"{name} grew")
    warm = expire + period
    post = [r for r in s if r[0] >= warm]
    stale = max(r[6] for r in s)
    a = statistics.mean(r[4] for r in mid); b = statistics.mean(r[4] for r in last)
    judged = n >= 6 and mid[0][0] >= warm
    ok = stale == 0 and (not judged or b <= max(a * 1.2, a + 64 * 2**20))
    print(f"  spool    middle {a / 2**20:9.1f} MiB  last {b / 2**20:9.1f} MiB  peak {max(r[4] for r in s) / 2**20:.1f} MiB, "
          f"files unused > {expire + period + 15} s seen: {stale} B{'' if judged else ' (thirds not judged: run < 3x(expire+cleanup))'}  "
          f"{'bounded' if ok else 'NOT BOUNDED'}")
    if not ok:
        fail.append("spool not bounded by cleanup")
if died:
    fail.append("docket died")
    print("\ndocket: DIED during the soak")
else:
    print(f"\ndocket: exit status {drc} after SIGTERM")
    if drc != 0:
        fail.append(f"docket exited {drc} on SIGTERM")
print("\nRESULT: " + ("PASS" if not fail else "FAIL: " + "; ".join(fail)))
sys.exit(1 if fail else 0)
PYEOF
src=0
python3 "$dir/summary.py" "$dir" "$soak" "$expire" "$period" "$died" "$drc" "$lrc" || src=$?
if [ -s "$dir/load.err" ]; then echo "load script stderr:"; head -20 "$dir/load.err"; fi
exit "$src"
