#![no_main]
//! The pcap reader on any bytes in any chunking (logic: `docket::fuzzing::reader`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| docket::fuzzing::reader(data));
