//! N handshakes at once (default 100) in ONE thread, from ONE `zmq::poll` over all 2N
//! registration sockets: what a supervisor or a single-threaded kernel host can do without any
//! runtime. Exits non-zero unless every pair connected with the same ports on both sides and all
//! port sets are distinct. `cargo run -p jupyter-handshake-zmq --example many_in_one_thread -- 100`

mod common;

use std::collections::HashSet;
use std::error::Error;
use std::process::ExitCode;

use jupyter_handshake_zmq::Clock;

fn main() -> Result<ExitCode, Box<dyn Error>> {
    let n: usize = std::env::args().nth(1).map_or(Ok(100), |a| a.parse())?;
    let ctx = zmq::Context::new();
    // Six sockets per kernel plus a ROUTER per launcher, under libzmq's default cap of 1023
    // sockets per context: up to 140 pairs fit in one context.
    if n > 140 {
        return Err("at most 140 pairs fit in one ZeroMQ context (1023 sockets)".into());
    }
    let clock = Clock::new();
    let start = std::time::Instant::now();
    let mut pairs = (0..n)
        .map(|_| common::Pair::new(&ctx))
        .collect::<Result<Vec<_>, _>>()?;
    common::run(&ctx, &mut pairs, &clock)?;
    let elapsed = start.elapsed();
    let mut ports = HashSet::new();
    let mut connected = 0;
    for pair in &pairs {
        if let (Some(a), Some(b)) = pair.connections() {
            if a.ports == b.ports && ports.insert(a.ports.as_array()) {
                connected += 1;
            }
        }
    }
    println!("{connected} of {n} handshakes connected in one thread in {elapsed:?}");
    Ok(if connected == n {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
