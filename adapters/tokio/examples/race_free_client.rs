//! A runtimed-style client that starts a kernel race-free and talks to it.
//!
//! runtimelib-based clients (runtimed, Zed's REPL) pick five free ports (`peek_ports`), write
//! them into a connection file, spawn the kernel and hope nobody takes a port meanwhile. Here
//! the part between the `race-free start` markers replaces all of that: one registration socket
//! bound on port 0, the kernel binds its own ports and registers them (or, stock ipykernel,
//! rewrites the file), and the client connects to ports that are already bound.
//!
//! Run: `race_free_client [--upstream] KERNEL_ARGV...` with `{connection_file}` in the argv,
//! e.g. `race_free_client python3 -m ipykernel_launcher -f {connection_file}`.

use std::error::Error;
use std::time::Duration;

use jupyter_handshake_tokio::kernelspec::LaunchMode;
use jupyter_handshake_tokio::{Client, LaunchOptions, launch};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    let mode = if argv.first().is_some_and(|a| a == "--upstream") {
        argv.remove(0);
        LaunchMode::Upstream
    } else {
        LaunchMode::Handshake
    };
    // race-free start: begin
    let options = LaunchOptions {
        mode,
        ..LaunchOptions::default()
    };
    let mut kernel = launch(&argv, &options).await?;
    let mut client = Client::connect(&kernel.connection).await?;
    let info = client.wait_for_ready(Duration::from_secs(30)).await?;
    // race-free start: end
    println!(
        "{} registered after {:?} ({:?}), shell port {}",
        info["implementation"],
        kernel.registered_after,
        kernel.evidence,
        kernel.connection.ports.shell
    );
    let outcome = client.execute("'hello'", Duration::from_secs(30)).await?;
    println!("execute: {}", outcome.reply["status"]);
    client.shutdown(Duration::from_secs(10)).await?;
    kernel.child.wait().await?;
    kernel.remove_file()?;
    Ok(())
}
