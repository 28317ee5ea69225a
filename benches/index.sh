#!/usr/bin/env bash
# Whole-system benchmark of the local backend's capture indexes, against its peers, in one run:
#
# 0. Data: >= 8 GiB of rotated classic-pcap files (the bulk trace, time-shifted copies, one
#    per 700 s, named log.pcap.<epoch> as Suricata/daemonlogger rotate), a ~1 GiB subset (the
#    first 85 files, as symlinks) and 10,000+ small files (editcap -c chunks of 16 copies).
# 1. Stenographer: ~1 GiB of the same traffic (85 loops) replayed into ONE real instance; the
#    queries below against it (window: the replay, since it stamps packets with replay time).
# 2. Indexing from an empty index_dir (8 GiB): wall time until /stats says every file indexed
#    and nothing left, process CPU time (utime+stime) → MB/s and MB/s per core; index size as
#    % of capture; peak RssAnon while indexing.
# 3. Queries — a rare host (4 packets per copy: ~2,700 in 8 GiB), the selective host of the
#    issue (10.0.2.15: 3,813 IPv4 packets per copy, 2.6 M in 8 GiB), host + port, a common
#    port, and the selective host in one 10-minute copy — time to first byte and to last byte
#    (curl), on:
#      8 GiB: Docket indexed, Docket with `index = false` (same dir), one tcpdump process
#             (`tcpdump -V <list of the files> -w out 'filter'`: reads the files one after
#             the other in a single process; the answer is usable when it ends);
#      1 GiB: Docket indexed, Stenographer (HTTP/1.1, TLS client cert), tcpdump.
#    Then the property on the whole 8 GiB: random clause sets over random windows (a fixed seed),
#    indexed and index=false, the same bytes (PROPERTY_QUERIES=12).
#    Also the time of `…/estimate` alone on the 8 GiB set (a job computes it before its first
#    byte). Peak RssAnon of the Docket process during the indexed queries, and after the
#    index=false ones; and of single indexed queries, each in a fresh process.
# 4. Written → queryable: a packet appended to a growing file (log.pcap.<now>) in an indexed
#    directory, a query polled until it comes back.
# 5. Startup over 10,000+ indexed files: index once, SIGTERM (the catalog is written), start
#    again; time from exec until the first query over all the files has answered, and /stats
#    files_read after the restart.
# The targets are printed beside the figures (last section).
#
# Usage: benches/index.sh    RUNS=3 (median of RUNS); BENCH_DIR=/path keeps the generated data
#        (~9 GiB) for the next run; DOCKET_BIN=/path/to/docket instead of cargo build --release;
#        STENO=0 skips Stenographer; STENO_WAIT=600 seconds to wait for 198.51.100.0/24 to be
#        free (a test of another work dir may hold it).
# Needs: editcap, capinfos, tcpdump, curl, python3; the steno scripts install
# stenographer and tcpreplay. Run as root (network namespaces).
# Traffic goes only to 127.0.0.1 and to the Stenographer namespace (198.51.100.0/24, made by
# ../shared/steno/up.sh with prefix dki). Every process started here is stopped by PID;
# down.sh removes the namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-3}"
steno="${DOCKET_STENO:-../shared/steno}"
steno_on="${STENO:-1}"
bulk="$(cd "${DOCKET_PCAPS:-../shared/pcaps}" && pwd)/bulk/mix-19-real-captures-10min.pcap"
data_gib="${DATA_GIB:-8}"
sub_files="${SUBSET_FILES:-85}"   # 85 x 12.6 MB = 1.0 GiB
many_files="${MANY_FILES:-10000}"
host="${HOST:-10.0.2.15}"
rare="${RARE_HOST:-157.240.193.48}"   # 4 packets per copy of the bulk trace
hport="${HOST_PORT:-28681}"       # the busiest port of 10.0.2.15 in the bulk trace
cport="${COMMON_PORT:-443}"
needle_copy=40                    # the 10-minute copy the needle query asks for
shift_s=700                       # the bulk trace spans 660 s: copies do not overlap
e0=1685620800                     # 2023-06-01T12:00:00Z, the bulk trace's first packet
work=/tmp/docket-bench-index-steno
if [ -n "${DOCKET_BIN:-}" ]; then docket="$DOCKET_BIN"; else cargo build --release -q; docket="$PWD/target/release/docket"; fi
for t in editcap capinfos tcpdump curl python3; do
    command -v "$t" >/dev/null || { echo "needs $t"; exit 1; }
done
if [ -n "${BENCH_DIR:-}" ]; then dir="$BENCH_DIR"; keep=1; else dir=$(mktemp -d /tmp/docket-index.XXXXXX); keep=0; fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
run="$dir/run"
rm -rf "$run"
mkdir -p "$run/tmp" "$run/live"
pids=()
steno_up=0
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "$steno_up" = 1 ]; then "$steno/down.sh" "$work" >/dev/null 2>&1 || true; fi
    if [ "$keep" = 1 ]; then rm -rf "$run/spool" "$run/tmp" "$run/many-spool"; else rm -rf "$dir"; fi
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
# Helpers (Python: /stats, CPU time from /proc, pcap record counts, the written→queryable probe)
cat > "$run/h.py" <<'PY'
import json, os, struct, sys, time, urllib.request

def get(url, timeout=60):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()

def cpu(pid, task=None):
    p = f"/proc/{pid}/task/{task}/stat" if task else f"/proc/{pid}/stat"
    s = open(p).read()
    rest = s.rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK"), s[s.index("(") + 1:s.rindex(")")]

def threads(pid):
    out = []
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            c, name = cpu(pid, t)
        except OSError:
            continue
        out.append((round(c, 2), name))
    return sorted(out, reverse=True)

def wait(base, pid, t0, timeout, *conds):
    """Until every NAME=N has indexed == N and backlog_bytes == 0 (NAME:readable=N: N files
    known), then one JSON line: wall seconds since t0, process CPU seconds, busiest threads,
    the sensors' /stats."""
    pid, t0, deadline = int(pid), float(t0), float(t0) + float(timeout)
    last = None
    while True:
        try:
            s = json.loads(get(base + "/stats", 10))
            last = s
            ok = True
            for c in conds:
                name, n = c.split("=")
                if name.endswith(":readable"):
                    ok &= s.get(name[:-9], {}).get("files", {}).get("readable") == int(n)
                else:
                    i = s.get(name, {}).get("files", {}).get("index") or {}
                    ok &= i.get("indexed") == int(n) and i.get("backlog_bytes") == 0
            if ok:
                wall = time.time() - t0
                names = [c.split("=")[0].split(":")[0] for c in conds]
                print(json.dumps({"wall": wall, "cpu": cpu(pid)[0], "threads": threads(pid)[:4],
                                  "stats": {n: s.get(n) for n in names}}))
                return
        except (OSError, ValueError):
            pass
        if time.time() > deadline:
            print(json.dumps({"error": f"not indexed after {timeout} s", "last": last}))
            sys.exit(1)
        time.sleep(0.1)

def count(path):
    """Records of a classic pcap file."""
    n = 0
    if not os.path.exists(path):
        return 0
    with open(path, "rb") as f:
        h = f.read(24)
        if len(h) < 24:
            return 0
        e = "<" if h[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        while True:
            r = f.read(16)
            if len(r) < 16:
                return n
            f.seek(struct.unpack(e + "I", r[8:12])[0], 1)
            n += 1

def packet(addr, t):
    """One Ethernet/IPv4/UDP record (little-endian µs pcap) from addr, stamped t."""
    payload = b"docket-bench-index"
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + 8 + len(payload), 1, 0, 64, 17, 0,
                     bytes(map(int, addr.split("."))), bytes([10, 99, 255, 254]))
    frame = b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + b"\x08\x00" + ip \
        + struct.pack("!HHHH", 40000, 9999, 8 + len(payload), 0) + payload
    return struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(frame), len(frame)) + frame

def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))

def newfile(path):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
        f.write(packet("10.99.255.1", time.time()))

def live(base, sensor, path, addr, timeout):
    """Appends one packet from addr (stamped now) to path, then polls a fresh query (the
    window's end moves by a second each time: no job is joined) until it answers with it."""
    now = time.time()
    rec = packet(addr, now)
    after = iso(int(now) - 600)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    os.write(fd, rec)
    t0 = time.monotonic()
    os.close(fd)
    k = 0
    while True:
        k += 1
        body = get(f"{base}/q/sensor/{sensor}/host/{addr}/after/{after}/before/{iso(int(now) + 600 + k)}/pcap")
        if len(body) > 24:
            print(f"{time.monotonic() - t0:.6f} {k}")
            return
        if time.monotonic() - t0 > float(timeout):
            print(f"nan {k}")
            return
        time.sleep(0.005)

def rss(pid, flag, out):
    """Peak RssAnon (KiB) of pid while flag exists, sampled every 20 ms."""
    peak = 0
    first = True
    while os.path.exists(flag):
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("RssAnon:"):
                    peak = max(peak, int(line.split()[1]))
                    break
        except OSError:
            break
        if first:
            open(flag + ".ready", "w").close()
            first = False
        time.sleep(0.02)
    open(out, "w").write(f"{peak}\n")

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "wait":
    wait(*args)
elif cmd == "count":
    print(count(args[0]))
elif cmd == "newfile":
    newfile(args[0])
elif cmd == "live":
    live(*args)
elif cmd == "rss":
    rss(*args)
PY
h() { python3 "$run/h.py" "$@"; }
forget() { # a PID that was waited for leaves the cleanup list (no kill of a reused PID)
    local p keep=()
    for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    pids=("${keep[@]}")
}
median() { sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "nan"}'; }
iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }
now() { date +%s.%N; }
sub() { python3 -c "print(f'{$1 - $2:.6f}')"; }
res() { echo "$*" >> "$run/results"; }
: > "$run/results"

# A Docket server: its pid in $spid once it says it listens (bounded).
serve() { # conf tag
    "$docket" serve -c "$1" > "$run/$2.out" 2> "$run/$2.err" &
    spid=$!; pids+=("$spid")
    for _ in $(seq 3000); do
        grep -q listening "$run/$2.out" 2>/dev/null && return 0
        kill -0 "$spid" 2>/dev/null || break
        sleep 0.01
    done
    echo "docket ($2) did not start:"; tail -5 "$run/$2.err"; exit 1
}
stop() { # pid: SIGTERM (the catalog is written), bounded wait, SIGKILL only if it hangs
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 600); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$1" 2>/dev/null; then echo "  docket $1 did not stop within 30 s: SIGKILL"; kill -KILL "$1"; fi
    wait "$1" 2>/dev/null || true
    forget "$1"
}
rss_start() { # pid tag
    touch "$run/rss-$2.on"
    h rss "$1" "$run/rss-$2.on" "$run/rss-$2" &
    pids+=($!); rss_pid=$!
    # Sampling from before the work starts (Python takes a while to start on a loaded machine).
    for _ in $(seq 500); do [ -e "$run/rss-$2.on.ready" ] && break; sleep 0.01; done
}
rss_stop() { # tag
    rm -f "$run/rss-$1.on"; wait "$rss_pid" 2>/dev/null || true
    forget "$rss_pid"
    res "M rss_$1 $(cat "$run/rss-$1")"
}

echo "machine: $(nproc) cores, $(free -g | awk '/^Mem/ {print $2}') GiB RAM, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
echo "docket: $docket ($("$docket" --version 2>/dev/null || echo '?'))"

# ---------------------------------------------------------------------------------------------
echo
echo "== 0. data"
bsize=$(stat -c %s "$bulk")
n8=$(( (data_gib * 1073741824 + bsize - 1) / bsize ))
if [ "$(cat "$dir/data8.done" 2>/dev/null)" != "$n8" ]; then
    need=$(( n8 * bsize / 1048576 + 6144 ))
    avail=$(df -m --output=avail "$dir" | tail -1)
    [ "$avail" -gt "$need" ] || { echo "needs ~$need MiB free in $dir, has $avail"; exit 1; }
    rm -rf "$dir/data8" "$dir/data8.done" "$dir/data1" "$dir/many" "$dir/many.done"
    mkdir -p "$dir/data8"
    start=$(now)
    # pcap, as rotating capture tools write (editcap's default would be pcapng).
    seq 0 $((n8 - 1)) | nice xargs -P 2 -I{} sh -c \
        'e=$(('"$e0"' + {} * '"$shift_s"')); editcap -F pcap -t $(({} * '"$shift_s"')) "$1" "$2/log.pcap.$e.tmp" && mv "$2/log.pcap.$e.tmp" "$2/log.pcap.$e"' \
        sh "$bulk" "$dir/data8"
    echo "$n8" > "$dir/data8.done"
    echo "  generated $n8 files in $(sub "$(now)" "$start") s"
fi
if [ ! -d "$dir/data1" ]; then
    mkdir -p "$dir/data1"
    for ((r = 0; r < sub_files; r++)); do
        ln -s "$dir/data8/log.pcap.$((e0 + r * shift_s))" "$dir/data1/"
    done
fi
bytes8=$(du -sbL "$dir/data8" | cut -f1)
bytes1=$(du -sbL "$dir/data1" | cut -f1)
pkts_bulk=$(capinfos -c -M "$bulk" | awk '/Number of packets/ {print $NF}')
if [ "$(cat "$dir/many.done" 2>/dev/null)" = "" ]; then
    rm -rf "$dir/many"; mkdir -p "$dir/many"
    # 16 copies cut into chunks of k packets: >= MANY_FILES files (plain names, ~20 KB each).
    k=$(( pkts_bulk * 16 / many_files ))
    for ((c = 0; c < 16; c++)); do
        nice editcap -F pcap -c "$k" "$dir/data8/log.pcap.$((e0 + c * shift_s))" "$dir/many/c$(printf %02d $c).pcap"
    done
    find "$dir/many" -type f | wc -l > "$dir/many.done"
fi
nmany=$(cat "$dir/many.done")
bytesmany=$(du -sb "$dir/many" | cut -f1)
ls "$dir"/data8/log.pcap.* > "$run/list8"
ls "$dir"/data1/log.pcap.* > "$run/list1"
echo "  8 GiB set: $n8 files, $(python3 -c "print(f'{$bytes8/2**30:.2f}')") GiB ($dir/data8)"
echo "  1 GiB set: $sub_files files, $(python3 -c "print(f'{$bytes1/2**30:.2f}')") GiB (symlinks, $dir/data1)"
echo "  many:      $nmany files, $((bytesmany / 1048576)) MiB ($dir/many)"
res "M bytes8 $bytes8"; res "M bytes1 $bytes1"; res "M n8 $n8"; res "M nmany $nmany"

t8a=$(iso "$e0")
win_after="2023-06-01T00:00:00Z"
win_before_s=$(( e0 + n8 * shift_s + 86400 ))   # past the last file; + run number per run
needle_after=$(iso $((e0 + needle_copy * shift_s)))
needle_before_s=$(( e0 + needle_copy * shift_s + 660 ))
qnames=(rare sel hostport port needle)
qpath=("host/$rare" "host/$host" "host/$host/port/$hport" "port/$cport" "host/$host")
qbpf=("host $rare" "host $host" "host $host and port $hport" "port $cport" "")
qdesc=("rare host $rare" "host $host" "host $host and port $hport" "port $cport" "host $host in one 10-min copy")
needle=4

# ---------------------------------------------------------------------------------------------
echo
echo "== 1. Stenographer: $sub_files loops of the bulk trace (~1 GiB) replayed into one instance"
steno_busy() { # what else uses 198.51.100.0/24 (up.sh refuses to start then)
    { ip -4 route show match 198.51.100.0/24; ip -4 route show root 198.51.100.0/24
      ip -4 -o addr show to 198.51.100.0/24 | awk '{print "address " $4 " dev " $2}'; } \
        | grep -v '^default' | grep -Ev 'dev dki-[a-z]-m( |$)' || true
}
steno_done=0
if [ "$steno_on" = 1 ]; then
    "$steno/down.sh" "$work" >/dev/null 2>&1 || true   # leftovers of an interrupted run of this script
    waited=0
    while [ -n "$(steno_busy)" ] && [ "$waited" -lt "${STENO_WAIT:-600}" ]; do
        [ "$waited" = 0 ] && echo "  198.51.100.0/24 is in use by another work dir ($(steno_busy | head -1)); waiting up to ${STENO_WAIT:-600} s"
        sleep 5; waited=$((waited + 5))
    done
    if [ -n "$(steno_busy)" ]; then
        echo "  SKIPPED: 198.51.100.0/24 still in use after ${STENO_WAIT:-600} s: $(steno_busy | tr '\n' ';')"
        res "M steno_skipped range-busy"
    else
        [ "$waited" -gt 0 ] && echo "  range free after $waited s"
        steno_up=1
        # Retried once: on a loaded machine up.sh can report "died" when the daemon's pid file
        # is not written within its 1 s (seen once here).
        if ! STENO_INSTANCES=1 STENO_PREFIX=dki STENO_NET=198.51.100 "$steno/up.sh" "$work" > "$run/steno-up.log" 2>&1; then
            echo "  up.sh failed ($(grep -m1 ERROR "$run/steno-up.log" || tail -1 "$run/steno-up.log")); down.sh, then once more"
            "$steno/down.sh" "$work" >> "$run/steno-up.log" 2>&1 || true
            sleep 2
            STENO_INSTANCES=1 STENO_PREFIX=dki STENO_NET=198.51.100 "$steno/up.sh" "$work" >> "$run/steno-up.log" 2>&1 \
                || { echo "  up.sh failed again:"; tail -5 "$run/steno-up.log"; exit 1; }
        fi
        # shellcheck disable=SC1091
        source "$work/instances.env"
        tls=(--cacert "$STENO_CA_CERT" --cert "$STENO_CLIENT_CERT" --key "$STENO_CLIENT_KEY")
        rep0=$(date +%s)
        "$steno/replay.sh" -w "$work" --no-wait a="$bulk" -- --topspeed --loop="$sub_files" > "$run/steno-replay.log" 2>&1 \
            || { echo "  replay.sh failed:"; tail -5 "$run/steno-replay.log"; exit 1; }
        rep1=$(date +%s)
        grep -E 'REPLAYED|tcpreplay sent|replay took' "$run/steno-replay.log" | sed 's/^/  /'
        sa=$(iso $((rep0 - 60))); sb=$(iso $((rep1 + 3600)))
        # Queryable: the selective host's count reaches loops x its count in the trace (bounded).
        # `ip host`: Stenographer (like Docket) does not match ARP, tcpdump's `host` does.
        want=$(( sub_files * $(tcpdump -nr "$bulk" "ip host $host" 2>/dev/null | wc -l) ))
        got=0
        for _ in $(seq 120); do
            curl -sS --http1.1 "${tls[@]}" --data-binary "host $host and after $sa and before $sb" \
                "$STENO_A_URL/query" -o "$run/tmp/st-count.pcap" || true
            got=$(h count "$run/tmp/st-count.pcap")
            [ "$got" -ge "$want" ] && break
            sleep 1
        done
        echo "  queryable $(( $(date +%s) - rep1 )) s after the replay ended: host $host $got packets (trace x $sub_files: $want)"
        [ "$got" -ge "$want" ] || echo "  WARNING: not every packet is queryable (drops?): $got < $want"
        for qi in 0 1 2 3; do
            for ((i = 1; i <= runs; i++)); do
                w=$(curl -sS --http1.1 "${tls[@]}" --data-binary "${qbpf[$qi]} and after $sa and before $sb" -o /dev/null \
                      -w '%{http_code} %{time_starttransfer} %{time_total} %{size_download}' "$STENO_A_URL/query")
                set -- $w
                [ "$1" = 200 ] || echo "  WARNING: stenographer answered $1 to ${qbpf[$qi]}"
                res "Q ${qnames[$qi]} S1 $i $2 $3 $4"
            done
            curl -sS --http1.1 "${tls[@]}" --data-binary "${qbpf[$qi]} and after $sa and before $sb" \
                -o "$run/tmp/st.pcap" "$STENO_A_URL/query"
            res "P ${qnames[$qi]} S1 $(h count "$run/tmp/st.pcap")"
            rm -f "$run/tmp/st.pcap"
        done
        pk=$(du -sb "$work"/a/data/*/packets | awk '{s += $1} END {print s}')
        ix=$(du -sb "$work"/a/data/*/index | awk '{s += $1} END {print s}')
        res "M steno_packets $pk"; res "M steno_index $ix"
        echo "  on disk: packets $((pk / 1048576)) MiB, index $((ix / 1048576)) MiB ($(python3 -c "print(f'{100*$ix/$pk:.2f}')") % of the packet files)"
        "$steno/down.sh" "$work" > "$run/steno-down.log" 2>&1 || echo "  down.sh failed (see $run/steno-down.log)"
        steno_up=0
        steno_done=1
        echo "  measured; instance stopped and namespace removed (down.sh)"
    fi
else
    echo "  SKIPPED (STENO=0)"
    res "M steno_skipped STENO=0"
fi

# ---------------------------------------------------------------------------------------------
echo
echo "== 2. indexing $n8 files ($(python3 -c "print(f'{$bytes8/2**30:.2f}')") GiB) from an empty index_dir, $runs runs"
cat > "$run/idx.toml" <<EOF
listen = "127.0.0.1:18281"
spool_dir = "$run/spool"
index_dir = "$run/index"
free_bytes = 0
time_window = 1
max_estimated_bytes = 0
shutdown_grace = 5
[[local]]
name = "idx8"
path = "$dir/data8"
EOF
for ((i = 1; i <= runs; i++)); do
    rm -rf "$run/index"
    t0=$(now)
    serve "$run/idx.toml" "idx$i"
    rss_start "$spid" "indexing$i"
    ibase="http://127.0.0.1:18281/app/docket"
    needle_q() { # k: one fresh job for the rare host in one 10-minute copy; prints its time
        curl -sS -o /dev/null -w '%{time_total}\n' \
            "$ibase/q/sensor/idx8/host/$rare/after/$needle_after/before/$(iso $((needle_before_s + $1)))/pcap"
    }
    if [ "$i" = 1 ]; then
        # A query's latency while the indexer runs flat out (5 queries, one a second), then
        # the same queries once indexing is done: the indexer must not starve queries.
        (for k in 1 2 3 4 5; do sleep 1; needle_q "$k"; done > "$run/lat-during") &
        lpid=$!; pids+=("$lpid")
    fi
    h wait "http://127.0.0.1:18281/app/docket" "$spid" "$t0" 1800 "idx8=$n8" > "$run/indexing$i.json" \
        || { echo "  indexing did not finish: $(head -c 600 "$run/indexing$i.json")"; exit 1; }
    rss_stop "indexing$i"
    if [ "$i" = 1 ]; then
        wait "$lpid" || true
        forget "$lpid"
        for k in 11 12 13 14 15; do needle_q "$k"; done > "$run/lat-idle"
        echo "  a query (rare host, one 10-min copy) while indexing: $(median < "$run/lat-during") s median of 5; once indexed: $(median < "$run/lat-idle") s"
        res "M lat_during $(median < "$run/lat-during")"
        res "M lat_idle $(median < "$run/lat-idle")"
    fi
    stop "$spid"
    python3 - "$run/indexing$i.json" "$bytes8" "$i" <<'EOF' | tee -a "$run/results" | sed -n 's/^#//p'
import json, sys
j = json.load(open(sys.argv[1])); b = int(sys.argv[2]); i = sys.argv[3]
ix = j["stats"]["idx8"]["files"]["index"]
print(f"M index_wall{i} {j['wall']}\nM index_cpu{i} {j['cpu']}\nM index_bytes8 {ix['index_bytes']}")
print(f"#  run {i}: {j['wall']:.1f} s wall, {j['cpu']:.1f} s CPU -> {b/j['wall']/1e6:.0f} MB/s, "
      f"{b/j['cpu']/1e6:.0f} MB/s per core; index {ix['index_bytes']/2**20:.0f} MiB = "
      f"{100*ix['index_bytes']/b:.2f} %; files_read {ix['files_read']}; busiest threads (CPU s): "
      + ", ".join(f"{n} {c}" for c, n in j['threads'][:3]))
EOF
    echo "     peak RssAnon while indexing: $(( $(cat "$run/rss-indexing$i") / 1024 )) MiB"
done

# ---------------------------------------------------------------------------------------------
echo
echo "== 3. queries (median of $runs; a fresh job each run: the window's end moves by a second)"
h newfile "$run/live/log.pcap.$(date +%s)"
cat > "$run/q.toml" <<EOF
listen = "127.0.0.1:18282"
spool_dir = "$run/spool"
index_dir = "$run/index"
free_bytes = 0
time_window = 1
max_estimated_bytes = 0
shutdown_grace = 5
[[local]]
name = "idx8"
path = "$dir/data8"
[[local]]
name = "scan8"
path = "$dir/data8"
index = false
[[local]]
name = "idx1"
path = "$dir/data1"
follow_symlinks = true
[[local]]
name = "live"
path = "$run/live"
EOF
t0=$(now)
serve "$run/q.toml" q
qpid=$spid
base="http://127.0.0.1:18282/app/docket"
# idx8 from the catalog of section 2; idx1 is indexed now (its own index); scan8 reads every
# file once to learn its time range (no catalog without an index).
h wait "$base" "$qpid" "$t0" 1800 "idx8=$n8" "idx1=$sub_files" "scan8:readable=$n8" > "$run/q-ready.json" \
    || { echo "  not ready: $(head -c 600 "$run/q-ready.json")"; exit 1; }
echo "  server ready (idx1 indexed, scan8 learned its files) after $(python3 -c "import json; print(round(json.load(open('$run/q-ready.json'))['wall'], 1))") s"
for s in idx8 scan8 idx1; do   # warm-up: one query per sensor, page cache for data and indexes
    curl -sS -o /dev/null "$base/q/sensor/$s/host/$host/after/$win_after/before/$(iso $((win_before_s + 1000)))/pcap"
done
dq() { # sensor qi run tag: time one fresh Docket job, then record its packets and delete it
    local a=$win_after b=$((win_before_s + $3)) p w id pk
    if [ "$2" = "$needle" ]; then a=$needle_after; b=$((needle_before_s + $3)); fi
    p="q/sensor/$1/${qpath[$2]}/after/$a/before/$(iso "$b")"
    w=$(curl -sS -o /dev/null -w '%{http_code} %{time_starttransfer} %{time_total} %{size_download}' "$base/$p/pcap")
    set -- "$1" "$2" "$3" "$4" $w
    [ "$5" = 200 ] || echo "  WARNING: docket answered $5 to $p"
    res "Q ${qnames[$2]} $4 $3 $6 $7 $8"
    read -r id pk < <(curl -sS "$base/$p" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["id"], j["packets"])')
    if [ "$3" = 1 ]; then res "P ${qnames[$2]} $4 $pk"; fi
    curl -sS -X DELETE "$base/$id" -o /dev/null || true
}
de() { # qi run: the dry run (…/estimate) on the 8 GiB set, no job
    local a=$win_after b=$((win_before_s + 500 + $2)) w
    if [ "$1" = "$needle" ]; then a=$needle_after; b=$((needle_before_s + $2)); fi
    w=$(curl -sS -o /dev/null -w '%{time_total}' "$base/q/sensor/idx8/${qpath[$1]}/after/$a/before/$(iso "$b")/estimate")
    res "Q ${qnames[$1]} E8 $2 nan $w 0"
}
td() { # list qi run tag: one tcpdump process reading every file of the list
    local t0 t1
    t0=$(now)
    tcpdump -n -V "$1" -w "$run/tmp/td.pcap" "${qbpf[$2]}" 2>/dev/null
    t1=$(now)
    res "Q ${qnames[$2]} $4 $3 nan $(sub "$t1" "$t0") $(stat -c %s "$run/tmp/td.pcap")"
    if [ "$3" = 1 ]; then res "P ${qnames[$2]} $4 $(h count "$run/tmp/td.pcap")"; fi
    rm -f "$run/tmp/td.pcap"
}
# Indexed sensors first (their memory figure is not inflated by the index=false scans: the
# allocator keeps what it got), then index=false, then tcpdump.
echo "  Docket indexed (8 GiB and 1 GiB) ..."
rss_start "$qpid" q_indexed
for qi in "${!qnames[@]}"; do
    for ((i = 1; i <= runs; i++)); do
        dq idx8 "$qi" "$i" D8i
        de "$qi" "$i"
        dq idx1 "$qi" "$i" D1i
    done
done
rss_stop q_indexed
echo "  Docket index=false (8 GiB) ..."
rss_start "$qpid" q_scan
for qi in "${!qnames[@]}"; do
    for ((i = 1; i <= runs; i++)); do dq scan8 "$qi" "$i" D8s; done
done
rss_stop q_scan
echo "  the same answer indexed and not (8 GiB, byte for byte) ..."
for qi in "${!qnames[@]}"; do
    a=$win_after; b=$((win_before_s + 777))
    if [ "$qi" = "$needle" ]; then a=$needle_after; b=$((needle_before_s + 77)); fi
    p="${qpath[$qi]}/after/$a/before/$(iso "$b")/pcap"
    si=$(curl -sS "$base/q/sensor/idx8/$p" | sha256sum | cut -c1-16)
    ss=$(curl -sS "$base/q/sensor/scan8/$p" | sha256sum | cut -c1-16)
    if [ "$si" = "$ss" ]; then v=same; else v=DIFFERENT; fi
    echo "    ${qnames[$qi]}: indexed $si, index=false $ss: $v"
    res "M eq_${qnames[$qi]} $v"
done
# The property on the whole set: random clause sets (addresses and ports tshark sees in the
# bulk trace, protocols) over random windows of the 8 GiB span, each answered indexed and with
# index=false: the same bytes. PROPERTY_QUERIES=12 of them; a fixed seed, so a run is repeatable.
nprop="${PROPERTY_QUERIES:-12}"
echo "  random clause sets and windows, indexed = index=false ($nprop, byte for byte) ..."
tshark -r "$bulk" -T fields -e ip.src -e ip.dst -e tcp.port -e udp.port 2>/dev/null \
    | tr '\t,' '\n\n' | grep -v '^$' | sort -u > "$run/prop-values"
python3 - "$run/prop-values" "$nprop" "$e0" "$n8" "$shift_s" > "$run/prop-queries" <<'PY'
import random, sys
vals = [v.strip() for v in open(sys.argv[1]) if v.strip()]
addrs = [v for v in vals if "." in v or ":" in v]
ports = [v for v in vals if v.isdigit()]
n, e0, files, shift = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rng = random.Random(20261130)
span = files * shift
for _ in range(n):
    c = []
    if rng.random() < 0.8: c.append("host/" + rng.choice(addrs))
    if rng.random() < 0.5: c.append("port/" + rng.choice(ports))
    c.append(rng.choice(["", "", "tcp", "udp"]))
    a = e0 + rng.randrange(0, span)
    b = a + rng.choice([60, 700, 7000, span])
    print("/".join(x for x in c if x) + f"/after/@{a}/before/@{b}")
PY
k=0
while read -r q; do
    k=$((k + 1))
    si=$(curl -sS "$base/q/sensor/idx8/$q/pcap" | sha256sum | cut -c1-16)
    ss=$(curl -sS "$base/q/sensor/scan8/$q/pcap" | sha256sum | cut -c1-16)
    if [ "$si" = "$ss" ]; then v=same; else v=DIFFERENT; fi
    echo "    $q: $v ($si)"
    res "M eq_random$(printf %02d "$k") $v"
done < "$run/prop-queries"
echo "  tcpdump (8 GiB and 1 GiB) ..."
for qi in "${!qnames[@]}"; do
    [ "$qi" = "$needle" ] && continue
    for ((i = 1; i <= runs; i++)); do
        td "$run/list8" "$qi" "$i" T8
        td "$run/list1" "$qi" "$i" T1
    done
done

# ---------------------------------------------------------------------------------------------
echo
echo "== 4. written -> queryable (a packet appended to $run/live/log.pcap.*, a query polled)"
livefile=$(ls "$run"/live/log.pcap.*)
ntrials=$(( runs > 5 ? runs : 5 ))
for ((i = 1; i <= ntrials; i++)); do
    # Trial 1 appends to a file written just before; later ones to a file that settled (3 s)
    # and was indexed meanwhile: it grows past its index.
    [ "$i" = 1 ] || sleep 6
    ix=$(curl -sS "$base/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["live"]["files"]["index"]["indexed"])')
    read -r d k < <(h live "$base" live "$livefile" "10.99.0.$i" 30)
    echo "  trial $i: $(python3 -c "print(f'{$d*1000:.1f}')") ms ($k queries; the file was $([ "$ix" = 1 ] || echo "not ")indexed before the append)"
    res "M live$i $d"
done
echo "  /stats live: $(curl -sS "$base/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["live"]["files"])')"
stop "$qpid"

echo
echo "== 4b. peak RssAnon of one indexed query (8 GiB) in a fresh process"
for qi in 0 1 3; do
    serve "$run/idx.toml" "rss$qi"
    sleep 1
    rss_start "$spid" "one_${qnames[$qi]}"
    curl -sS -o /dev/null "http://127.0.0.1:18281/app/docket/q/sensor/idx8/${qpath[$qi]}/after/$win_after/before/$(iso $((win_before_s + 900)))/pcap"
    rss_stop "one_${qnames[$qi]}"
    stop "$spid"
    echo "  ${qdesc[$qi]}: $(( $(cat "$run/rss-one_${qnames[$qi]}") / 1024 )) MiB"
done

# ---------------------------------------------------------------------------------------------
echo
echo "== 5. startup over $nmany indexed files"
cat > "$run/many.toml" <<EOF
listen = "127.0.0.1:18283"
spool_dir = "$run/many-spool"
index_dir = "$run/many-index"
free_bytes = 0
time_window = 1
max_estimated_bytes = 0
shutdown_grace = 5
[[local]]
name = "many"
path = "$dir/many"
EOF
mbase="http://127.0.0.1:18283/app/docket"
t0=$(now)
serve "$run/many.toml" many0
h wait "$mbase" "$spid" "$t0" 1800 "many=$nmany" > "$run/many0.json" \
    || { echo "  not indexed: $(head -c 600 "$run/many0.json")"; exit 1; }
python3 - "$run/many0.json" "$bytesmany" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1])); b = int(sys.argv[2])
print(f"  first start, indexing: {j['wall']:.1f} s wall, {j['cpu']:.1f} s CPU "
      f"({b/j['cpu']/1e6:.0f} MB/s per core on ~{b/j['stats']['many']['files']['index']['indexed']/1e3:.0f} KB files)")
EOF
stop "$spid"
for ((i = 1; i <= runs; i++)); do
    t0=$(now)
    serve "$run/many.toml" "many$i"
    tl=$(now)
    p="q/sensor/many/host/$host/after/$win_after/before/$(iso $((win_before_s + i)))/pcap"
    code=000
    for _ in $(seq 600); do
        code=$(curl -sS -o /dev/null -w '%{http_code}' "$mbase/$p" 2>/dev/null || true)
        [ "$code" = 200 ] && break
        sleep 0.05
    done
    t1=$(now)
    [ "$code" = 200 ] || echo "  WARNING: the first query answered $code"
    fr=$(curl -sS "$mbase/stats" | python3 -c 'import json,sys; i=json.load(sys.stdin)["many"]["files"]["index"]; print(i["files_read"], i["indexed"])')
    # The same query on the running server (fresh job): the steady state over all the files.
    w=$(curl -sS -o /dev/null -w '%{time_total}' "$mbase/q/sensor/many/host/$host/after/$win_after/before/$(iso $((win_before_s + 100 + i)))/pcap")
    echo "  restart $i: listening after $(python3 -c "print(f'{($tl-$t0)*1000:.0f}')") ms, first query over all files answered after $(python3 -c "print(f'{($t1-$t0)*1000:.0f}')") ms; files_read, indexed: $fr; same query once warm: $(python3 -c "print(f'{$w*1000:.0f}')") ms"
    res "M startup$i $(sub "$t1" "$t0")"; res "M listen$i $(sub "$tl" "$t0")"; res "M warm$i $w"
    res "M files_read$i ${fr%% *}"
    stop "$spid"
done

# ---------------------------------------------------------------------------------------------
echo
echo "== results (medians of $runs runs)"
python3 - "$run/results" "$runs" "${qdesc[@]}" <<'EOF'
import math, statistics as st, sys
lines = [l.split() for l in open(sys.argv[1]) if l.strip()]
runs = int(sys.argv[2]); desc = sys.argv[3:]
M = {}
for l in lines:
    if l[0] == "M":
        M[l[1]] = l[2]
def fm(k):
    try:
        return float(M[k])
    except (KeyError, ValueError):
        return math.nan
def med(v):
    v = [x for x in v if not math.isnan(x)]
    return st.median(v) if v else math.nan
Q, P = {}, {}
for l in lines:
    if l[0] == "Q":
        Q.setdefault((l[1], l[2]), []).append(tuple(float(x) for x in l[4:7]))
    elif l[0] == "P":
        P[(l[1], l[2])] = l[3]
def q(name, tgt, i):
    return med([r[i] for r in Q.get((name, tgt), [])])
def ms(x):
    return "n/a" if math.isnan(x) else (f"{x*1000:.1f} ms" if x < 10 else f"{x:.1f} s")
def x(a, b):
    return "n/a" if math.isnan(a) or math.isnan(b) or b == 0 else f"{a/b:.1f}x"
labels = {"D8i": "Docket indexed, 8 GiB", "E8": "  its .../estimate alone", "D8s": "Docket index=false, 8 GiB",
          "T8": "tcpdump -V (1 process), 8 GiB", "D1i": "Docket indexed, 1 GiB", "S1": "Stenographer, 1 GiB",
          "T1": "tcpdump -V (1 process), 1 GiB"}
names = ["rare", "sel", "hostport", "port", "needle"]
for n, d in zip(names, desc):
    print(f"\n  {d}")
    print(f"    {'':32} {'first byte':>11} {'last byte':>11} {'answer':>10} {'packets':>10}")
    for t in ["D8i", "E8", "D8s", "T8", "D1i", "S1", "T1"]:
        if (n, t) not in Q:
            continue
        size = q(n, t, 2)
        sz = "" if t == "E8" else f"{size/1e6:>7.1f} MB"
        print(f"    {labels[t]:32} {ms(q(n, t, 0)):>11} {ms(q(n, t, 1)):>11} {sz:>10} {P.get((n, t), ''):>10}")
    d8, f8, s8, t8, d1, s1 = q(n, "D8i", 1), q(n, "D8i", 0), q(n, "D8s", 1), q(n, "T8", 1), q(n, "D1i", 1), q(n, "S1", 1)
    parts = []
    if not math.isnan(t8):
        parts.append(f"tcpdump / Docket indexed, 8 GiB: {x(t8, d8)} (last byte), {x(t8, f8)} (first byte)")
    parts.append(f"index=false / indexed: {x(s8, d8)}")
    if not math.isnan(s1):
        parts.append(f"Stenographer / Docket, 1 GiB: {x(s1, d1)}")
    print("    " + "; ".join(parts))

b8 = fm("bytes8")
wall = med([fm(f"index_wall{i}") for i in range(1, runs + 1)])
cpu = med([fm(f"index_cpu{i}") for i in range(1, runs + 1)])
idx_pct = 100 * fm("index_bytes8") / b8
startup = med([fm(f"startup{i}") for i in range(1, runs + 1)])
listen = med([fm(f"listen{i}") for i in range(1, runs + 1)])
warm = med([fm(f"warm{i}") for i in range(1, runs + 1)])
fread = [M.get(f"files_read{i}", "?") for i in range(1, runs + 1)]
lives = [fm(k) for k in M if k.startswith("live")]
live = med(lives)
rss_idx = max(fm(k) for k in M if k.startswith("rss_indexing")) / 1024
rss_qi, rss_qs = fm("rss_q_indexed") / 1024, fm("rss_q_scan") / 1024
rss_one = {n: fm(f"rss_one_{n}") / 1024 for n in ["rare", "sel", "port"]}
print(f"\n  indexing 8 GiB: {wall:.1f} s wall, {cpu:.1f} s CPU -> {b8/wall/1e6:.0f} MB/s, {b8/cpu/1e6:.0f} MB/s per core; "
      f"index {fm('index_bytes8')/2**20:.0f} MiB")
if "steno_index" in M:
    print(f"  Stenographer's own index: {100*fm('steno_index')/fm('steno_packets'):.2f} % of its packet files "
          f"({fm('steno_packets')/2**20:.0f} MiB on disk for ~1 GiB replayed)")
def ok(c):
    return "n/a" if c is None else ("ok" if c else "MISS")
rows = []
for n in ["rare", "sel"]:
    d8, f8, t8, d1, s1 = q(n, "D8i", 1), q(n, "D8i", 0), q(n, "T8", 1), q(n, "D1i", 1), q(n, "S1", 1)
    label = "rare host" if n == "rare" else "host " + desc[1].split()[-1]
    # The >= 100x and <= 50 ms targets are the selective query's (a host with a few thousand
    # packets); the busy host's answer is a third of the packets, its time is writing it out.
    selective = n == "rare"
    dense = "" if selective else " (not selective: figures only)"
    rows += [
        (f"{label}: >= 100x faster than tcpdump, 8 GiB{dense}", f"{x(t8, d8)} (last byte), {x(t8, f8)} (first byte)",
         t8 / d8 >= 100 if selective else None),
        (f"{label}: faster than Stenographer, 1 GiB",
         "n/a (Stenographer skipped)" if math.isnan(s1) else f"Docket {ms(d1)} vs Stenographer {ms(s1)}",
         None if math.isnan(s1) else d1 < s1),
        (f"{label}: <= 50 ms on 8 GiB{dense}", f"{ms(f8)} first byte, {ms(d8)} last byte",
         d8 <= 0.05 if selective else None),
    ]
n8 = q("needle", "D8i", 1)
rows += [
    ("host, one 10-min copy: <= 50 ms on 8 GiB", f"{ms(q('needle', 'D8i', 0))} first byte, {ms(n8)} last byte", n8 <= 0.05),
    ("index <= 3 % of capture", f"{idx_pct:.2f} %", idx_pct <= 3),
    ("indexing >= 1 GB/s per core", f"{b8/cpu/1e9:.2f} GB/s per core ({b8/wall/1e9:.2f} GB/s wall)", b8 / cpu >= 1e9),
    (f"startup <= 1 s with 10,000 files ({int(fm('nmany'))})",
     f"first answer {ms(startup)} (listening {ms(listen)}; warm {ms(warm)}); files_read {'/'.join(fread)}", startup <= 1),
    ("queryable <= 1 s after write", f"{ms(live)} (max {ms(max(lives))})", live <= 1),
    ("a query is not starved by indexing", f"{ms(fm('lat_during'))} while indexing vs {ms(fm('lat_idle'))} after", None),
    ("indexed = index=false, 8 GiB, byte for byte", ", ".join(f"{k[3:]} {v}" for k, v in sorted(M.items()) if k.startswith("eq_")),
     all(v == "same" for k, v in M.items() if k.startswith("eq_"))),
    ("RssAnon < 64 MiB: indexing", f"{rss_idx:.1f} MiB", rss_idx < 64),
    ("RssAnon < 64 MiB: one query, fresh process",
     f"rare host {rss_one['rare']:.1f}, {desc[1]} {rss_one['sel']:.1f}, {desc[3]} {rss_one['port']:.1f} MiB",
     None if math.isnan(max(rss_one.values())) else max(rss_one.values()) < 64),
    ("RssAnon < 64 MiB: the bench's query process",
     f"peak during the indexed queries {rss_qi:.1f} MiB; during index=false ones {rss_qs:.1f} MiB",
     None if math.isnan(rss_qi) else rss_qi < 64),
]
print(f"\n  {'target':50} {'measured':66} verdict")
for t, m, c in rows:
    print(f"  {t:50} {m:66} {ok(c)}")
EOF
echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
