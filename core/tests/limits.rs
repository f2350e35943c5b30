//! [`Limits::REGISTRATION`], the tight bounds the drivers put on a registration socket that any
//! local process can reach, never refuse a real request: a kernel's request in either dialect,
//! with a long user name and kernel id, behind a REQ's routing id and empty delimiter, connects.

mod common;

use common::*;
use jupyter_handshake::wire::Limits;
use jupyter_handshake::*;

/// A launcher in `Bound` with `config` (its limits set to the registration bounds), and a kernel
/// with a 256-byte user name in `AwaitingReply`; the launcher receives the request as a ROUTER
/// hands it over and must be Connected.
fn connects_under_registration_limits(mut config: LauncherConfig) {
    config.limits = Limits::REGISTRATION;
    let (mut launcher, file) = bound_launcher(config);
    let kernel_config = KernelConfig {
        username: "u".repeat(256),
        ..KernelConfig::default()
    };
    let (_kernel, request) = awaiting_kernel(file, kernel_config, at(1));
    let mut frames = vec![b"routing-id-0001".to_vec(), Vec::new()];
    frames.extend(request);
    let largest = frames.iter().map(Vec::len).max().unwrap();
    assert!(
        frames.len() <= Limits::REGISTRATION.max_frames
            && largest <= Limits::REGISTRATION.max_frame_len,
        "{} frames, the largest {largest} bytes",
        frames.len()
    );
    launcher.receive(at(2), &frames);
    assert_eq!(launcher.state(), LauncherState::Connected);
}

#[test]
fn a_posit_request_fits_the_registration_limits() {
    connects_under_registration_limits(launcher_config(KEY));
}

#[test]
fn an_upstream_request_fits_the_registration_limits() {
    connects_under_registration_limits(upstream_config(KEY, &"k".repeat(128)));
}
