#![no_main]
//! The front door on client-controlled bytes: URL grammar through routing, JSON and form
//! bodies, Range and auth headers (logic: `docket::fuzzing::http_request`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| docket::fuzzing::http_request(data));
