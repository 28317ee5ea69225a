#![no_main]
//! The k-way merge against a sort (logic: `docket::fuzzing::merge_against_sort`).
libfuzzer_sys::fuzz_target!(|inputs: Vec<Vec<u8>>| docket::fuzzing::merge_against_sort(inputs));
