//! Links the core into a `#![no_std]` staticlib: the build fails if std sneaks in.
#![no_std]

extern crate alloc;

use core::alloc::{GlobalAlloc, Layout};

/// An allocator that never allocates: this crate only has to link, never to run.
struct NoAlloc;

// SAFETY: returning null is always allowed; dealloc is never reached with a real pointer.
unsafe impl GlobalAlloc for NoAlloc {
    unsafe fn alloc(&self, _: Layout) -> *mut u8 {
        core::ptr::null_mut()
    }
    unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}
}

#[global_allocator]
static ALLOCATOR: NoAlloc = NoAlloc;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

/// Touches the core's public API so it is really linked.
#[unsafe(no_mangle)]
pub extern "C" fn nostd_check_verify(frames: *const u8, len: usize) -> bool {
    use jupyter_handshake::{Key, SignatureScheme, Signer};
    if frames.is_null() {
        return false;
    }
    // SAFETY: the caller passes a valid buffer of `len` bytes.
    let bytes = unsafe { core::slice::from_raw_parts(frames, len) };
    let signer = Signer::new(SignatureScheme::HmacSha256, &Key::new("k"));
    signer.verify(bytes, &[bytes]).is_ok()
}
