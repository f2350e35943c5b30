//! Replays every committed fuzz corpus file (`fuzz/corpus/<target>/`) through the same target
//! bodies the fuzzer runs, on stable, in every CI run.
#![cfg(feature = "fuzzing")]

use std::path::Path;

use jupyter_handshake::fuzzing;

fn replay(target: &str, body: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus for {target}");
    for file in &files {
        let data = std::fs::read(file).unwrap();
        let outcome = std::panic::catch_unwind(|| body(&data));
        assert!(
            outcome.is_ok(),
            "{target}: {} broke a property",
            file.display()
        );
    }
}

#[test]
fn wire_split_corpus() {
    replay("wire_split", fuzzing::wire_split);
}

#[test]
fn verify_corpus() {
    replay("verify", fuzzing::verify);
}

#[test]
fn connection_file_corpus() {
    replay("connection_file", fuzzing::connection_file);
}

#[test]
fn kernel_machine_corpus() {
    replay("kernel_machine", fuzzing::kernel_machine);
}

#[test]
fn launcher_machine_corpus() {
    replay("launcher_machine", fuzzing::launcher_machine);
}

#[test]
fn registrar_machine_corpus() {
    replay("registrar_machine", fuzzing::registrar_machine);
}
