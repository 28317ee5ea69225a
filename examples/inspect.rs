//! Prints what the reader makes of capture files: packet count and the error, if any.
//! `cargo run --example inspect -- FILE...`
fn main() {
    for path in std::env::args().skip(1) {
        let data = std::fs::read(&path).expect("read");
        let mut r = docket::pcap::Reader::from_bytes(bytes::Bytes::from(data));
        let mut n = 0;
        let mut err = None;
        for p in r.by_ref() {
            match p {
                Ok(_) => n += 1,
                Err(e) => err = Some(e),
            }
        }
        println!(
            "{path}: {n} packets, {:?}, declared {:?}, err {:?}",
            r.format(),
            r.declared(),
            err
        );
    }
}
