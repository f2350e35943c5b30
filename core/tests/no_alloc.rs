//! Receiving is allocation-free up to a verified message: split, signature decode and MAC check
//! touch no heap, in both framings (full messages and the upstream dialect's content-only ones). Counted with a global allocator that tallies allocations on this thread.

#![allow(unsafe_code)] // a counting global allocator is the only way to count allocations

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use jupyter_handshake::wire::{self, Limits, Parts};
use jupyter_handshake::{Key, SignatureScheme, Signer};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn split_and_verify_allocate_nothing() {
    for scheme in [
        SignatureScheme::HmacSha256,
        SignatureScheme::HmacSha384,
        SignatureScheme::HmacSha512,
    ] {
        let signer = Signer::new(scheme, &Key::new("a key"));
        let content = vec![b'x'; 64 * 1024];
        let parts = Parts {
            header: br#"{"msg_id":"1","session":"s","username":"u","date":"d","msg_type":"t","version":"5.5"}"#,
            parent_header: b"{}",
            metadata: b"{}",
            content: &content,
        };
        let frames = wire::join(
            &[b"id".as_slice()],
            &signer,
            &parts,
            &[b"buffer".as_slice()],
        );
        let limits = Limits::default();
        let mut ok = false;
        let n = allocations_during(|| {
            ok = wire::split(&frames, &limits)
                .map(|m| m.verify(&signer).is_ok())
                .unwrap_or(false);
        });
        assert!(ok);
        assert_eq!(n, 0, "{scheme}: {n} allocations");

        // Rejections are allocation-free too.
        let other = Signer::new(scheme, &Key::new("another key"));
        let n = allocations_during(|| {
            ok = wire::split(&frames, &limits)
                .map(|m| m.verify(&other).is_err())
                .unwrap_or(false);
        });
        assert!(ok);
        assert_eq!(n, 0);
    }
    // The upstream dialect's handshake messages (a signature over the content frame alone):
    // split and verify allocate nothing either, accepted or refused.
    let signer = Signer::new(SignatureScheme::HmacSha256, &Key::new("a key"));
    let frames = wire::join_content_only(
        &[b"id".as_slice()],
        &signer,
        br#"{"shell_port":1,"iopub_port":2,"stdin_port":3,"control_port":4,"hb_port":5}"#,
    );
    let limits = Limits::default();
    for (key, accepted) in [("a key", true), ("another key", false)] {
        let verifier = Signer::new(SignatureScheme::HmacSha256, &Key::new(key));
        let mut outcome = None;
        let n = allocations_during(|| {
            outcome = wire::split_content_only(&frames, &limits)
                .ok()
                .map(|m| m.verify(&verifier).is_ok());
        });
        assert_eq!(outcome, Some(accepted));
        assert_eq!(n, 0, "content-only, {key}: {n} allocations");
    }

    // The counter does count: a Vec allocates.
    assert_eq!(allocations_during(|| drop(vec![1u8; 10])), 1);
}
