//! The five ports of a classic launch ([`LaunchMode::Classic`](crate::LaunchMode::Classic)):
//! racy on purpose.
//!
//! jupyter_client picks a classic kernel's ports by binding port 0 and closing the sockets
//! again, writes them into the connection file, and starts the kernel, which binds them later.
//! Between the close and the kernel's bind, any process may take one of those ports, and the
//! kernel then dies with "Address already in use" (or a client talks to the thief). That race
//! is why the handshake exists; [`pick_ports`] is here for kernels that cannot register, and to
//! show the race.

use std::io;
use std::net::TcpListener;

use jupyter_handshake::{KernelPorts, Transport};

use crate::files::free_ipc_port;

/// Five distinct free ports, picked the racy way: tcp ports by binding port 0 on `ip` with five
/// listeners at once and closing them; ipc numbers `N` with no file `{ip}-{N}` (an ipc "port"
/// is a file name suffix, as in jupyter_client).
///
/// ```
/// use jupyter_handshake::Transport;
/// let ports = jupyter_handshake_host::classic::pick_ports(Transport::Tcp, "127.0.0.1")?;
/// let all = [ports.shell, ports.iopub, ports.stdin, ports.control, ports.hb];
/// assert!(all.iter().all(|&p| p != 0));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn pick_ports(transport: Transport, ip: &str) -> io::Result<KernelPorts> {
    let ports: Vec<u16> = match transport {
        Transport::Tcp => {
            let listeners = (0..5)
                .map(|_| TcpListener::bind((ip, 0)))
                .collect::<io::Result<Vec<_>>>()?;
            listeners
                .iter()
                .map(|l| l.local_addr().map(|a| a.port()))
                .collect::<io::Result<_>>()?
            // The listeners close here: from now on anyone may take these ports.
        }
        Transport::Ipc => {
            let mut taken = Vec::with_capacity(5);
            for _ in 0..5 {
                let n = free_ipc_port(ip, &taken).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::AddrInUse, "no free ipc number left")
                })?;
                taken.push(n);
            }
            taken
        }
    };
    let [shell, iopub, stdin, control, hb] = ports[..] else {
        return Err(io::Error::other("expected five ports"));
    };
    Ok(KernelPorts {
        shell,
        iopub,
        stdin,
        control,
        hb,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_distinct_ports_on_either_transport() {
        let tcp = pick_ports(Transport::Tcp, "127.0.0.1").unwrap();
        let mut all = vec![tcp.shell, tcp.iopub, tcp.stdin, tcp.control, tcp.hb];
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 5);

        let prefix =
            std::env::temp_dir().join(format!("jh-ipc-{}", crate::files::new_session_id()));
        let prefix = prefix.to_string_lossy().into_owned();
        std::fs::write(format!("{prefix}-1"), b"taken").unwrap();
        let ipc = pick_ports(Transport::Ipc, &prefix).unwrap();
        assert_eq!(
            [ipc.shell, ipc.iopub, ipc.stdin, ipc.control, ipc.hb],
            [2, 3, 4, 5, 6]
        );
        std::fs::remove_file(format!("{prefix}-1")).unwrap();
    }
}
