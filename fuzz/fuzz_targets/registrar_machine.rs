#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| jupyter_handshake::fuzzing::registrar_machine(data));
