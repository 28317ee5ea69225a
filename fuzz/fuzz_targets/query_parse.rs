#![no_main]
//! The query grammar: parse, render, parse again (logic: `docket::fuzzing::query_roundtrip`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| docket::fuzzing::query_roundtrip(data));
