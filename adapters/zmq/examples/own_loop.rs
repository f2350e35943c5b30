//! The reference for embedding the core in an event loop of your own (an R or Python
//! interpreter's, a GUI's): one kernel machine and one launcher machine, both driven from a
//! single hand-written `zmq::poll` loop in one thread, with no async runtime, no extra thread and
//! no child process (the registration file is handed over in memory).
//!
//! The loop is four steps (see `common::run`): drain each machine and do what it asks (bind,
//! connect, send); poll the registration sockets until the earliest deadline; feed what arrived
//! (`Received`); feed the time (`Timeout`, harmless when early). Run it with
//! `cargo run -p jupyter-handshake-zmq --example own_loop`.

mod common;

use std::error::Error;
use std::process::ExitCode;

use jupyter_handshake_zmq::Clock;

fn main() -> Result<ExitCode, Box<dyn Error>> {
    let ctx = zmq::Context::new();
    let clock = Clock::new();
    let mut pairs = [common::Pair::new(&ctx)?];
    common::run(&ctx, &mut pairs, &clock)?;
    let pair = &pairs[0];
    println!(
        "launcher {:?}, kernel {:?}",
        pair.launcher.state(),
        pair.kernel.as_ref().map(|k| k.state())
    );
    match pair.connections() {
        (Some(seen_by_launcher), Some(bound_by_kernel)) => {
            println!("launcher sees   {:?}", seen_by_launcher.ports);
            println!("kernel bound    {:?}", bound_by_kernel.ports);
            if seen_by_launcher.ports == bound_by_kernel.ports {
                println!("ports match");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("ports differ");
                Ok(ExitCode::FAILURE)
            }
        }
        _ => {
            eprintln!(
                "not connected: launcher {:?}, kernel {:?}",
                pair.launcher.failure(),
                pair.kernel.as_ref().and_then(|k| k.failure())
            );
            Ok(ExitCode::FAILURE)
        }
    }
}
