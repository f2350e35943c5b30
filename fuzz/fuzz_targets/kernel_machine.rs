#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| jupyter_handshake::fuzzing::kernel_machine(data));
