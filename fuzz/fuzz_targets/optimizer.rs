#![no_main]

mod capped;

#[global_allocator]
static ALLOC: capped::Capped = capped::Capped;

libfuzzer_sys::fuzz_target!(|data: &[u8]| diffuse::fuzzing::optimizer(data));
