//! The logic of the fuzz targets, kept in the library so that the targets stay a few lines and
//! every input a fuzzer finds can be replayed as a unit test. Each function panics exactly when
//! a property is broken.

use bytes::Bytes;
use std::cmp::Reverse;
use std::sync::Arc;

use crate::merge::KWay;
use crate::pcap::{Next, Packet, Reader, Timestamp, MAX_BLOCK};

/// The reader on arbitrary bytes in arbitrary chunking: the first byte picks the chunk sizes.
/// Must end (packets then at most one typed error) without panicking, buffer no more than it
/// was given plus one bounded record, and agree with a read of the same bytes in one piece.
pub fn reader(input: &[u8]) {
    let Some((&seed, data)) = input.split_first() else {
        return;
    };
    let data = Bytes::copy_from_slice(data);
    let whole = read(&data, &[data.len().max(1)]);
    let sizes = [
        1 + seed as usize % 7,
        1 + seed as usize * 13,
        3,
        1 + seed as usize / 3,
    ];
    let chunked = read(&data, &sizes);
    assert_eq!(whole.0, chunked.0, "packets differ by chunking");
    assert_eq!(
        whole.1.map(|e| std::mem::discriminant(&e)),
        chunked.1.map(|e| std::mem::discriminant(&e)),
        "outcome differs by chunking"
    );
}

fn read(data: &Bytes, sizes: &[usize]) -> (Vec<Packet>, Option<crate::pcap::Error>) {
    let mut r = Reader::new();
    let (mut pos, mut k, mut out) = (0, 0, Vec::new());
    // Every step either consumes input, pushes input, or ends: bounded by the input length.
    for _ in 0..=(2 * data.len() + 4) {
        match r.next_packet() {
            Ok(Next::Packet(p)) => out.push(p),
            Ok(Next::End) => return (out, None),
            Err(e) => return (out, Some(e)),
            Ok(Next::NeedMore) => {
                if pos == data.len() {
                    r.finish();
                } else {
                    let n = sizes[k % sizes.len()].clamp(1, data.len() - pos);
                    k += 1;
                    r.push(data.slice(pos..pos + n));
                    pos += n;
                }
            }
        }
        assert!(r.buffered() <= data.len() + MAX_BLOCK as usize);
    }
    panic!("the reader did not finish");
}

/// The merge on structured input: each inner vector is one input's timestamps (sorted here),
/// checked against a reference sort: time ascending, ties to the higher input index (as
/// mergecap), then input order.
pub fn merge_against_sort(mut inputs: Vec<Vec<u8>>) {
    inputs.truncate(64);
    for v in &mut inputs {
        v.sort();
    }
    let mut k = KWay::new(inputs.len());
    let mut next = vec![0usize; inputs.len()];
    let mut out = Vec::new();
    // Feeds input `i` if the merge asks for it. Only the input just popped can newly need a
    // packet, so after the first round only that one is offered (offering all k inputs per
    // pop made the harness, not the merge, the cost: ~1k inputs/s on long inputs).
    let mut feed = |k: &mut KWay, i: usize| {
        if !k.needs(i) {
            return;
        }
        match inputs[i].get(next[i]) {
            Some(&t) => {
                let tag = Bytes::from(vec![i as u8, next[i] as u8, (next[i] >> 8) as u8]);
                k.push(
                    i,
                    Packet {
                        ts: Timestamp(t as i128),
                        link_type: 1,
                        orig_len: 3,
                        data: tag,
                    },
                );
                next[i] += 1;
            }
            None => k.end(i),
        }
    };
    for i in 0..k.len() {
        feed(&mut k, i);
    }
    while let Some((i, p)) = k.pop() {
        let seq = p.data[1] as usize | (p.data[2] as usize) << 8;
        assert_eq!(p.data[0] as usize, i);
        out.push((i, seq, p.ts.0 as u8));
        feed(&mut k, i);
    }
    // A merge that stalled (pop answering None while an input it never asked for waits) ends
    // here, not done.
    assert!(k.is_done());
    let mut want: Vec<(usize, usize, u8)> = inputs
        .iter()
        .enumerate()
        .flat_map(|(i, v)| v.iter().enumerate().map(move |(s, &t)| (i, s, t)))
        .collect();
    want.sort_by_key(|&(i, s, t)| (t, Reverse(i), s));
    assert_eq!(out, want);
}

/// The query grammar on arbitrary paths: parsing never panics; whatever parses renders back
/// (`Query::to_path`) into a path that parses to the same canonical form and job id.
pub fn query_roundtrip(input: &[u8]) {
    use crate::query::{parse_path, QueryConfig};
    let Ok(path) = std::str::from_utf8(input) else {
        return;
    };
    let now = Timestamp(1_700_000_000 * crate::pcap::NANOS_PER_SEC);
    let cfg = QueryConfig::default();
    let Ok(q) = parse_path(path, now, &cfg) else {
        return;
    };
    let again = parse_path(&q.to_path(), now, &cfg)
        .unwrap_or_else(|e| panic!("{path:?} rendered as {:?} does not parse: {e}", q.to_path()));
    assert_eq!(q.canonical(), again.canonical(), "{path:?}");
    assert_eq!(q.id(), again.id());
    let _ = (q.stenographer(), q.bpf_filter());
}

/// The HTTP front door on a request a client controls: the bytes are one HTTP/1.1 connection's
/// input (request line, headers — `Authorization`, `Range`, `Content-Type`… — and body),
/// served in-process by the real front door, routes and query parsers over an empty capture
/// directory. The first byte chooses a server without or with passwords (user `a`, password
/// `a`). Must answer without panicking, within a (wall-clock) bound, never with a 500.
pub fn http_request(input: &[u8]) {
    let Some((&mode, data)) = input.split_first() else {
        return;
    };
    let fx = http_fixture();
    let state = Arc::clone(&fx.states[usize::from(mode & 1)]);
    let data = data.to_vec();
    let st = Arc::clone(&state);
    // Spawned, as the server runs every connection: the exchange runs on a worker, never inside
    // `block_on` (where the stall seen after millions of inputs sat, no thread running).
    let exchange = fx.runtime.spawn(exchange(st, data));
    // The bound is kept by a plain thread, not a tokio timer, so that it reports even if the
    // runtime itself stops waking anything. Wall-clock, so generous: a fuzzer at low priority
    // beside a busy machine can be starved for seconds (the input takes milliseconds).
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watched = Arc::clone(&state);
    let watchdog = std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            finished.recv_timeout(std::time::Duration::from_secs(60))
        {
            // What every job was doing then, printed before the abort (a panic here would
            // not stop the stalled main thread).
            eprintln!(
                "the front door did not answer within 60 s; free merge slots {}; jobs: {:#?}",
                watched.registry.free_slots(),
                watched
                    .registry
                    .all()
                    .iter()
                    .map(|j| (j.id, j.snapshot()))
                    .collect::<Vec<_>>()
            );
            std::process::abort();
        }
    });
    let answer = fx.runtime.block_on(exchange);
    let _ = done.send(());
    let _ = watchdog.join();
    let answer = answer.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    fx.runtime.block_on(async {
        for job in state.registry.all() {
            let _ = state.registry.remove(&job.id).await;
        }
    });
    // The jobs just removed end on their own; wait (bounded) until their spool files are
    // created or given up and their writers are done, then join the writer threads: no input
    // leaves a thread behind, nor one halfway through its exit when LeakSanitizer scans (it
    // then reports the thread's runtime or its thread-local destructor list as leaked).
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while (crate::spool::writers_alive() > 0 || state.registry.spool().pending_ops() > 0)
        && std::time::Instant::now() < until
    {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    if crate::spool::writers_alive() == 0 {
        crate::spool::join_writers();
    }
    // Every answer's status line: never a 500.
    for line in answer.split(|&b| b == b'\n') {
        assert!(
            !line.starts_with(b"HTTP/1.1 500"),
            "internal error: {}",
            String::from_utf8_lossy(&answer)
        );
    }
}

/// One HTTP/1.1 connection carrying `data`, served by the real front door; what it answered.
async fn exchange(st: Arc<crate::http::AppState>, data: Vec<u8>) -> Vec<u8> {
    let (client, server) = tokio::io::duplex(1 << 16);
    let (server, wire) = crate::http::wire::Watched::new(server);
    let info = crate::http::ConnInfo {
        peer: "127.0.0.1:9".parse().expect("an address"),
        tls: false,
        cert_user: None,
        wire,
        activity: Arc::new(crate::http::conn::Activity::new(None)),
    };
    let conn = serve(hyper_util::rt::TokioIo::new(server), st, info);
    let talk = async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut rd, mut wr) = tokio::io::split(client);
        let _ = wr.write_all(&data).await;
        let _ = wr.shutdown().await;
        let mut out = Vec::new();
        let _ = rd.read_to_end(&mut out).await;
        out
    };
    let (_, out) = tokio::join!(conn, talk);
    out
}

/// The front door on one HTTP/1.1 connection. Generic over the stream as the server's own
/// `serve_conn` is: with the concrete type, the spawned future's `Send` proof fails on a
/// higher-ranked `From` bound inside hyper.
async fn serve<I>(io: I, st: Arc<crate::http::AppState>, info: crate::http::ConnInfo)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let (st, info) = (Arc::clone(&st), info.clone());
        async move { Ok::<_, std::convert::Infallible>(crate::http::front::handle(req, st, info).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, svc)
        .await;
}

struct HttpFixture {
    runtime: tokio::runtime::Runtime,
    states: [Arc<crate::http::AppState>; 2],
}

fn http_fixture() -> &'static HttpFixture {
    static FX: std::sync::OnceLock<HttpFixture> = std::sync::OnceLock::new();
    FX.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            // Blocking threads are kept, not ended after 10 s idle: a thread exiting while
            // LeakSanitizer scans (libFuzzer checks after any input that allocated more than
            // it freed) has its thread-local destructor list reported as leaked.
            .thread_keep_alive(std::time::Duration::from_secs(24 * 3600))
            .enable_all()
            .build()
            .expect("a runtime");
        // And made now: a thread being born while LeakSanitizer scans has its start-up closure
        // reported as leaked, so the inputs must find idle threads, not start new ones.
        let warm = 16;
        let all_running = Arc::new(std::sync::Barrier::new(warm + 1));
        let threads: Vec<_> = (0..warm)
            .map(|_| {
                let b = Arc::clone(&all_running);
                runtime.spawn_blocking(move || {
                    b.wait();
                })
            })
            .collect();
        all_running.wait();
        runtime.block_on(async {
            for t in threads {
                let _ = t.await;
            }
        });
        let dir = std::env::temp_dir().join(format!("docket-fuzz-http-{}", std::process::id()));
        let caps = dir.join("caps");
        std::fs::create_dir_all(&caps).expect("a temporary directory");
        // {SHA} of "a": user `a`, password `a`.
        let htpasswd = dir.join("htpasswd");
        std::fs::write(&htpasswd, "a:{SHA}hvfkN/qlp/zhXR3cuerq6jd2Z7g=\n").expect("htpasswd");
        let state = |name: &str, auth: &str| {
            let conf = dir.join(format!("{name}.toml"));
            let text = format!(
                "spool_dir = \"{}\"\nfree_bytes = 0\n{auth}\n[[local]]\nname = \"caps\"\npath = \"{}\"\n",
                dir.join(format!("spool-{name}")).display(),
                caps.display()
            );
            std::fs::write(&conf, text).expect("config");
            let config = crate::config::Config::load(&conf).expect("a valid config");
            let spool = crate::spool::Spool::open(&config.spool_dir).expect("a spool");
            let _guard = runtime.enter();
            let registry = Arc::new(
                crate::jobs::Registry::new(
                    config.jobs(),
                    &config.local,
                    &config.stenographer,
                    spool,
                    false,
                )
                .expect("a registry"),
            );
            Arc::new(crate::http::AppState::new(config.http(), registry).expect("state"))
        };
        let states = [
            state("open", ""),
            state("auth", &format!("[auth]\nhtpasswd = \"{}\"\nmax_failures = 1000000", htpasswd.display())),
        ];
        HttpFixture { runtime, states }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn http_request_examples() {
        for req in [
            &b"\x00GET /app/docket/q/host/10.0.0.1/pcap HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1,3-4\r\n\r\n"[..],
            b"\x01GET /app/docket/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YTph\r\n\r\n",
            b"\x00POST /app/docket/q HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"host\":\"1.2.3.4\"",
            b"\x00DELETE /app/docket/00000000000000000000000000000000 HTTP/1.1\r\n\r\n",
            b"\x01garbage\r\n\r\n",
            // Found by the fuzzer: a form `bpf` value with bytes that are not UTF-8 (replaced
            // by U+FFFD) made the host-name check slice inside a character.
            b"\x00POST /app/docket/api/ HTTP/1.1\r\nHost:coded\r\nContent-Length: 22\r\n\r\nhost=2.2.3.4&bpf=t\xff\xff\xffcp+port+1",
            // Found by the fuzzer after 8.7 M inputs in one process: pipelined pcap requests
            // with odd Range headers did not answer within 60 s there. Alone it answers in
            // milliseconds (the stall needs the fixture's accumulated state; being looked into).
            include_bytes!("../fuzz/seeds/http_request/pipelined-ranges-stall"),
        ] {
            super::http_request(req);
        }
    }
}
