//! The tokio [`Launcher`] as `bench/flood.py` drives a launcher: N kernels at once through one
//! registration socket, each checked with kernel_info, one JSON line per kernel, then every
//! kernel stopped.
//!
//! `flood_launcher launch --json --count N [--timeout SECONDS] -- KERNEL_ARGV...` (the argv
//! with `{connection_file}`); files go to the runtime dir (`JUPYTER_RUNTIME_DIR`). Prints, per
//! kernel in launch order, `{"kernel_info":{"status":"ok"},"timings_us":{"register":T},...}`
//! (T: from the start until every launch was over) or `{"status":"failed","error":...}`;
//! exit status 0 when all registered, 1 otherwise, 2 on bad arguments. With
//! `python3 bench/flood.py --launcher "target/release/examples/flood_launcher launch"`.

use std::time::{Duration, Instant};

use jupyter_handshake_tokio::{ChildStdio, Client, LaunchOptions, Launcher};

fn usage() -> ! {
    eprintln!(
        "usage: flood_launcher launch [--json] --count N [--timeout SECONDS] -- KERNEL_ARGV..."
    );
    std::process::exit(2);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let start = Instant::now();
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("launch") {
        usage();
    }
    let (mut count, mut timeout) = (1usize, Duration::from_secs(30));
    let mut argv = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => {}
            "--count" => {
                count = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--timeout" => {
                let secs: f64 = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| usage());
                timeout = Duration::try_from_secs_f64(secs).unwrap_or_else(|_| usage());
            }
            "--" => {
                argv = args.by_ref().collect();
            }
            _ => usage(),
        }
    }
    if argv.is_empty() || count == 0 {
        usage();
    }
    let options = LaunchOptions {
        timeout,
        stdout: ChildStdio::Null,
        stderr: ChildStdio::Null,
        ..LaunchOptions::default()
    };
    let mut launcher = match Launcher::bind(options).await {
        Ok(launcher) => launcher,
        Err(e) => {
            eprintln!("flood_launcher: {e}");
            std::process::exit(1);
        }
    };
    let argvs = vec![argv; count];
    let results = match launcher.launch_many(&argvs).await {
        Ok(results) => results,
        Err(e) => {
            eprintln!("flood_launcher: {e}");
            std::process::exit(1);
        }
    };
    let registered = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    let mut all_ok = true;
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Ok(mut kernel) => {
                let info = match Client::connect(&kernel.connection).await {
                    Ok(mut client) => client
                        .wait_for_ready(timeout)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                let status = if info.is_ok() { "ok" } else { "failed" };
                all_ok &= info.is_ok();
                println!(
                    "{}",
                    serde_json::json!({
                        "index": i,
                        "kernel_info": {"status": status},
                        "timings_us": {"register": registered},
                        "error": info.err(),
                    })
                );
                // Stopped, and its file (with the key) removed.
                let _ = kernel.stop(Duration::from_secs(1)).await;
            }
            Err(e) => {
                all_ok = false;
                println!(
                    "{}",
                    serde_json::json!({"status": "failed", "index": i, "error": e.to_string()})
                );
            }
        }
    }
    std::process::exit(if all_ok { 0 } else { 1 });
}
