//! `jupyter-handshake`: race-free Jupyter kernel launches through the JEP 66 kernel handshake.
//!
//! * `jupyter-handshake demo` launches the built-in kernel through the handshake and prints both
//!   state machines on one timeline;
//! * `jupyter-handshake launch -- ARGV…` launches any kernel (handshake, file rewrite or classic),
//!   checks it with `kernel_info`, shuts it down and reports (`--json` for scripts);
//! * `jupyter-handshake kernel -f FILE` is a small but real kernel that registers through the
//!   handshake when given a registration file, or binds a classic connection file's ports;
//! * `jupyter-handshake kernelspec install` makes that kernel visible to Jupyter.
//!
//! Every protocol decision lives in the `jupyter-handshake` core and every socket, file and
//! process in the `jupyter-handshake-zmq` library; this binary only parses arguments, serves the
//! built-in kernel's requests and prints reports. See `jupyter-handshake --help`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
