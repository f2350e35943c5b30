//! Files, directories and randomness: what the core leaves to its drivers.
//!
//! * [`write_private_atomic`] writes connection and registration files the way a reader can
//!   trust: owner-only from the first byte, and complete or absent (temporary file, `fsync`,
//!   rename).
//!   On Windows there is no mode: the file inherits the ACL of its directory, and the default
//!   directory ([`runtime_dir`], under `%APPDATA%`) is in the user's profile, whose ACL grants
//!   access to the user, `SYSTEM` and the Administrators only. That ACL is what protects the
//!   key there (jupyter_core additionally rewrites the file's own ACL through pywin32; this
//!   crate does not). Give a launcher another directory only if it is as private.
//! * [`runtime_dir`] is where Jupyter puts connection files (jupyter_core's rule).
//! * [`read_handshake_file`] reads a file a kernel or a user handed over without trusting it,
//!   and [`FileWatch`] is how a launcher watches the file it handed to a kernel (`stat` first,
//!   read only on change).
//! * [`random_key`] and [`new_session_id`] come from the operating system's secure random number
//!   generator (through `getrandom`): the core has no randomness of its own.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use jupyter_handshake::Key;

/// Writes `bytes` to `path` atomically, readable and writable by the owner only.
///
/// The bytes go to a new temporary file in the same directory (created with mode `0600` on Unix,
/// so the content is never readable by others, whatever the umask), and the temporary file is
/// renamed over `path`. A reader therefore sees the old file or the complete new one, never a
/// partial write. On error the temporary file is removed.
///
/// Nothing is `fsync`ed: atomicity for readers comes from the rename, and durability across a
/// crash of the machine is worth nothing here (a registration or connection file is only of use
/// while its launcher and kernel run, and jupyter_client does not sync them either). The two
/// syncs it used to make took 450 ms of 20 spawns under a registration flood (70 ms without).
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// let dir = std::env::temp_dir().join(format!("doc-{}", jupyter_handshake_host::files::new_session_id()));
/// jupyter_handshake_host::files::create_private_dir(&dir)?;
/// let path = dir.join("kernel-1.json");
/// jupyter_handshake_host::files::write_private_atomic(&path, b"{}")?;
/// assert_eq!(std::fs::read(&path)?, b"{}");
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path names no file (it ends in `..` or is a root)",
        )
    })?;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", random_hex(8)?));
    let tmp = dir.join(tmp_name);

    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    let written = file.write_all(bytes).and_then(|()| {
        drop(file);
        fs::rename(&tmp, path)
    });
    if let Err(error) = written {
        let _ = fs::remove_file(&tmp);
        return Err(error);
    }
    Ok(())
}

/// Creates `dir` and its missing parents; on Unix the directories it creates get mode `0700`
/// (as jupyter_client does for the runtime directory). An existing directory is left as it is.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// The Jupyter runtime directory, where connection files go: jupyter_core's
/// `jupyter_runtime_dir()`.
///
/// `$JUPYTER_RUNTIME_DIR` if set and not empty, else `{data dir}/runtime`, where the data dir is
/// `$JUPYTER_DATA_DIR` if set, else `~/Library/Jupyter` on macOS, `%APPDATA%\jupyter` on Windows,
/// and `$XDG_DATA_HOME/jupyter` (default `~/.local/share/jupyter`) elsewhere.
///
/// jupyter_core 5 no longer uses `$XDG_RUNTIME_DIR` ("we no longer use XDG_RUNTIME_DIR after
/// various problems"), and neither does this function, so both find the same files.
/// `$JUPYTER_PLATFORM_DIRS` (platformdirs locations) is not supported. Without a home directory
/// the system temporary directory stands in for it.
pub fn runtime_dir() -> PathBuf {
    runtime_dir_with(|name| std::env::var_os(name), std::env::consts::OS)
}

/// [`runtime_dir`] with the environment and OS name as parameters, so it can be tested.
fn runtime_dir_with(var: impl Fn(&str) -> Option<OsString>, os: &str) -> PathBuf {
    let set = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set("JUPYTER_RUNTIME_DIR") {
        return dir;
    }
    let data = set("JUPYTER_DATA_DIR").unwrap_or_else(|| {
        let home = || {
            set(if os == "windows" {
                "USERPROFILE"
            } else {
                "HOME"
            })
            .unwrap_or_else(std::env::temp_dir)
        };
        match os {
            "macos" => home().join("Library").join("Jupyter"),
            "windows" => set("APPDATA")
                .map(|appdata| appdata.join("jupyter"))
                .unwrap_or_else(|| {
                    set("JUPYTER_CONFIG_DIR")
                        .unwrap_or_else(|| home().join(".jupyter"))
                        .join("data")
                }),
            _ => set("XDG_DATA_HOME")
                .unwrap_or_else(|| home().join(".local").join("share"))
                .join("jupyter"),
        }
    });
    data.join("runtime")
}

/// The most bytes a registration or connection file may have when read through
/// [`read_handshake_file`]: 64 KiB, far above any real one (a few hundred bytes), far below
/// anything that could hurt the reader.
pub const MAX_HANDSHAKE_FILE_LEN: u64 = 64 * 1024;

/// Why [`read_handshake_file`] read nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileReadError {
    /// The file could not be opened or read (absent, no permission, being replaced, or, for
    /// [`Links::Refuse`], a symbolic link: `ELOOP`).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The path names something other than a regular file (a FIFO, a device, a socket, a
    /// directory), which is never opened for reading.
    #[error("not a regular file (a FIFO, device, socket or directory)")]
    NotRegular,
    /// The file is larger than [`MAX_HANDSHAKE_FILE_LEN`]; nothing beyond that is read.
    #[error("larger than {max} bytes (at least {len})", max = MAX_HANDSHAKE_FILE_LEN)]
    TooLarge {
        /// How many bytes it has at least.
        len: u64,
    },
}

/// Whether [`read_handshake_file`] follows a symbolic link at the last component of its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Links {
    /// Follow it (a connection file a user handed over may be a link).
    Follow,
    /// Refuse it (`O_NOFOLLOW`): the launcher watching a file it wrote, which only the kernel
    /// could have replaced by a link.
    Refuse,
}

/// Reads a registration or connection file without ever blocking or reading without bound,
/// whatever is at `path`:
///
/// * opened non-blocking (`O_NONBLOCK`, so a FIFO with no writer cannot block the open or the
///   read) and, with [`Links::Refuse`], without following a symbolic link (`O_NOFOLLOW`);
/// * only a regular file is read (checked with `fstat` on what was opened, so nothing can be
///   swapped in between the check and the read): a FIFO, `/dev/zero` or a directory is refused;
/// * at most [`MAX_HANDSHAKE_FILE_LEN`] bytes (one more is asked for, to tell a file that is
///   too large; it is refused).
///
/// ```
/// use jupyter_handshake_host::files::{Links, read_handshake_file};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("doc-{}", jupyter_handshake_host::files::new_session_id()));
/// # jupyter_handshake_host::files::create_private_dir(&dir)?;
/// let path = dir.join("kernel-1.json");
/// jupyter_handshake_host::files::write_private_atomic(&path, b"{}")?;
/// assert_eq!(read_handshake_file(&path, Links::Refuse)?, b"{}");
/// # #[cfg(unix)]
/// assert!(read_handshake_file(std::path::Path::new("/dev/zero"), Links::Follow).is_err());
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
pub fn read_handshake_file(path: &Path, links: Links) -> Result<Vec<u8>, FileReadError> {
    use std::io::Read;

    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let nofollow = match links {
            Links::Refuse => libc::O_NOFOLLOW,
            Links::Follow => 0,
        };
        options.custom_flags(libc::O_NONBLOCK | nofollow);
    }
    #[cfg(windows)]
    if links == Links::Refuse {
        // Opens a symbolic link (a reparse point) itself rather than its target; the
        // regular-file check below then refuses it.
        use std::os::windows::fs::OpenOptionsExt;
        const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;
        options.custom_flags(FILE_FLAG_OPEN_REPARSE_POINT);
    }
    #[cfg(not(any(unix, windows)))]
    let _ = links;
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(FileReadError::NotRegular);
    }
    if meta.len() > MAX_HANDSHAKE_FILE_LEN {
        return Err(FileReadError::TooLarge { len: meta.len() });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // The file may grow after the fstat: the cap holds on what is read, not on what was seen.
    file.take(MAX_HANDSHAKE_FILE_LEN + 1)
        .read_to_end(&mut bytes)?;
    let len = bytes.len() as u64;
    if len > MAX_HANDSHAKE_FILE_LEN {
        return Err(FileReadError::TooLarge { len });
    }
    Ok(bytes)
}

/// A fresh connection key: 16 bytes from the OS's secure random number generator as 32
/// lowercase hex characters, the shape Kallichore writes.
///
/// # Panics
///
/// If the operating system cannot provide random bytes (`getrandom` failed), which leaves no
/// safe way to make a key.
pub fn random_key() -> Key {
    match random_hex(16) {
        Ok(hex) => Key::new(hex),
        Err(error) => panic!("cannot make a connection key: {error}"),
    }
}

/// A fresh session id: 16 random bytes formatted as a version-4 UUID
/// (`xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx`), unique per process as the core's
/// [`Session`](jupyter_handshake::message::Session) requires.
///
/// # Panics
///
/// If the operating system cannot provide random bytes.
pub fn new_session_id() -> String {
    let mut bytes = [0u8; 16];
    if let Err(error) = getrandom::fill(&mut bytes) {
        panic!("cannot make a session id: {error}");
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = to_hex(&bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `n` random bytes from the OS's secure random number generator, as lowercase hex (for
/// unpredictable names: temporary files, ipc paths, routing ids).
pub fn random_hex(n: usize) -> io::Result<String> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(to_hex(&bytes))
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// The first ipc number `N` ≥ 1, not in `taken`, with no file `{ip}-{N}` (ipc "ports" are
/// file name suffixes, as in jupyter_client). Only a guess: a path free now may be taken
/// before it is bound, so a driver binding it must still bind exclusively.
pub fn free_ipc_port(ip: &str, taken: &[u16]) -> Option<u16> {
    (1..=u16::MAX)
        .find(|n| !taken.contains(n) && !std::path::Path::new(&format!("{ip}-{n}")).exists())
}

/// How many random ipc numbers [`IpcClaim::new`] tries before giving up.
const IPC_TRIES: usize = 256;

/// A claim on the ipc path `{ip}-{N}` for a random `N`, held while it is bound: no other
/// process of ours can claim or bind the same path meanwhile, whoever starts when.
///
/// "Is `{ip}-{N}` free?" followed by a bind is a race (two kernels starting together take one
/// path; libzmq even unlinks the first one's socket file). Instead, for a random `N`:
///
/// 1. the lock file `{ip}-{N}.lock` is created with `O_CREAT | O_EXCL` (mode 0600 on Unix):
///    exactly one process can; anyone else draws another `N`;
/// 2. holding it, `{ip}-{N}` is checked: a socket file there (a live socket, or one a crashed
///    process left) is never replaced, another `N` is drawn;
/// 3. the caller binds `{ip}-{N}`, then drops the claim, which removes the lock. Whoever locks
///    `N` later sees the socket file in step 2, since the bind happened first.
///
/// Keep an [`IpcFile`] for the bound path: it removes the socket file when dropped.
#[derive(Debug)]
pub struct IpcClaim {
    number: u16,
    lock: PathBuf,
}

impl IpcClaim {
    /// Claims a free random `N` in 1..=65535 next to `ip` (a path prefix).
    pub fn new(ip: &str) -> io::Result<Self> {
        for _ in 0..IPC_TRIES {
            let number = random_ipc_number()?;
            let path = format!("{ip}-{number}");
            let lock = PathBuf::from(format!("{path}.lock"));
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            match options.open(&lock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!(
                            "cannot create the lock file of ipc://{} (is the directory writable?): {e}",
                            crate::quote(&path)
                        ),
                    ));
                }
            }
            let claim = Self { number, lock };
            if fs::symlink_metadata(&path).is_ok() {
                // Taken: the claim's lock goes when it is dropped here.
                continue;
            }
            return Ok(claim);
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("no free ipc number found in {IPC_TRIES} random tries"),
        ))
    }

    /// The claimed `N`.
    pub fn number(&self) -> u16 {
        self.number
    }
}

impl Drop for IpcClaim {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.lock);
    }
}

/// A random ipc number in 1..=65535, from the OS's secure generator.
fn random_ipc_number() -> io::Result<u16> {
    loop {
        let mut bytes = [0u8; 2];
        getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
        let n = u16::from_le_bytes(bytes);
        if n != 0 {
            return Ok(n);
        }
    }
}

/// A socket file this process bound (`ipc://{ip}-{N}`), removed when dropped (libzmq removes
/// only the files of the wildcard `ipc://*` on close; zeromq removes its own from a task that
/// may not run before the process exits).
#[derive(Debug)]
pub struct IpcFile(PathBuf);

impl IpcFile {
    /// The socket file of a bound endpoint, to remove when its socket is gone; `None` for tcp.
    pub fn of(transport: jupyter_handshake::Transport, ip: &str, port: u16) -> Option<Self> {
        match transport {
            jupyter_handshake::Transport::Ipc => Some(Self(format!("{ip}-{port}").into())),
            jupyter_handshake::Transport::Tcp => None,
        }
    }
}

impl Drop for IpcFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// A launcher's watch on the file it handed to a kernel, which trusts nothing the kernel (or
/// anything running as the user) may have put there.
///
/// [`changed`](Self::changed) is cheap when nothing happened: one `lstat`. The file is read
/// only when that `stat` (length, modification time, and on Unix the inode, which an atomic
/// replacement changes even within one tick of a coarse clock) differs from the last one, and
/// then through [`read_handshake_file`] with [`Links::Refuse`]: never blocking, never through
/// a symbolic link, regular files only, at most [`MAX_HANDSHAKE_FILE_LEN`] bytes. News is bytes
/// that differ from the last ones written or seen. A half-written file is news too: the core
/// drops it as garbage, and the rest of the write, which changes the `stat` again, is read
/// again.
#[derive(Debug)]
pub struct FileWatch {
    path: PathBuf,
    stat: Option<Stat>,
    bytes: Vec<u8>,
}

/// What one `stat` says about a file, enough to tell it changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stat {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl FileWatch {
    /// Watches `path`, whose content is `bytes` (as just written).
    pub fn new(path: PathBuf, bytes: Vec<u8>) -> Self {
        let stat = stat(&path);
        Self { path, stat, bytes }
    }

    /// The path watched.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's new bytes, if it changed since the last look (see the [type docs](Self)).
    /// A file that cannot be read right now (being replaced, removed) is no news, and is looked
    /// at again next time. A FIFO, a device, a link or a file over the cap is no news either,
    /// and is not looked at again until its `stat` changes: it can never block or grow us.
    pub fn changed(&mut self) -> Option<Vec<u8>> {
        let stat = stat(&self.path)?;
        if Some(stat) == self.stat {
            return None;
        }
        let bytes = match read_handshake_file(&self.path, Links::Refuse) {
            Ok(bytes) => bytes,
            Err(FileReadError::Io(e)) if !is_link_refused(&e) => return None,
            Err(_) => {
                self.stat = Some(stat);
                return None;
            }
        };
        // The stat was taken before the read: a write in between shows as a change again at
        // the next look, and is read then.
        self.stat = Some(stat);
        if bytes == self.bytes {
            return None;
        }
        self.bytes.clone_from(&bytes);
        Some(bytes)
    }
}

/// Whether opening failed because the path is a symbolic link refused by [`Links::Refuse`]
/// (`ELOOP` on Unix).
fn is_link_refused(error: &io::Error) -> bool {
    #[cfg(unix)]
    {
        error.raw_os_error() == Some(libc::ELOOP)
    }
    #[cfg(not(unix))]
    {
        let _ = error;
        false
    }
}

/// A file's [`Stat`] from one `lstat` (a link planted in its place is itself what changed);
/// `None` if it cannot be stat'ed now.
fn stat(path: &Path) -> Option<Stat> {
    let meta = fs::symlink_metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stat {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A fresh private directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(pub(crate) PathBuf);

    impl TempDir {
        pub(crate) fn new() -> Self {
            let dir = std::env::temp_dir().join(format!("jh-host-test-{}", new_session_id()));
            create_private_dir(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn ipc_claims_are_distinct_held_while_binding_and_leave_nothing() {
        let dir = TempDir::new();
        let ip = dir.0.join("k").to_string_lossy().into_owned();
        let names = || -> Vec<String> {
            let mut n: Vec<_> = fs::read_dir(&dir.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            n.sort();
            n
        };
        let claims: Vec<IpcClaim> = (0..64).map(|_| IpcClaim::new(&ip).unwrap()).collect();
        let mut numbers: Vec<u16> = claims.iter().map(IpcClaim::number).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), 64, "64 claims held at once, 64 numbers");
        assert_eq!(names().len(), 64, "one lock file per claim: {:?}", names());
        // A bound path's socket file outlives the claims; its guard removes it.
        let bound = claims[0].number();
        fs::write(format!("{ip}-{bound}"), b"").unwrap();
        let file = IpcFile::of(jupyter_handshake::Transport::Ipc, &ip, bound);
        drop(claims);
        assert_eq!(names(), [format!("k-{bound}")]);
        drop(file);
        assert!(names().is_empty(), "{:?}", names());
        assert!(IpcFile::of(jupyter_handshake::Transport::Tcp, &ip, 1).is_none());
    }

    #[test]
    fn writes_atomically_and_privately() {
        let dir = TempDir::new();
        let path = dir.0.join("kernel-x.json");
        write_private_atomic(&path, b"first").unwrap();
        write_private_atomic(&path, b"second, longer").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second, longer");
        let names: Vec<_> = fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            [OsString::from("kernel-x.json")],
            "no temp file left"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let dir_mode = fs::metadata(&dir.0).unwrap().permissions().mode();
            assert_eq!(dir_mode & 0o077, 0, "private dir");
        }
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = TempDir::new();
        // Renaming a file over a non-empty directory fails.
        let target = dir.0.join("occupied");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("inside"), b"x").unwrap();
        assert!(write_private_atomic(&target, b"data").is_err());
        assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 1);
        assert!(write_private_atomic(Path::new("/"), b"x").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn handshake_files_are_read_capped_non_blocking_and_regular_only() {
        let dir = TempDir::new();
        let file = dir.0.join("kernel.json");
        write_private_atomic(&file, b"{}").unwrap();
        assert_eq!(read_handshake_file(&file, Links::Refuse).unwrap(), b"{}");
        // A link to it: followed only when asked; refused with ELOOP otherwise.
        let link = dir.0.join("link.json");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read_handshake_file(&link, Links::Follow).unwrap(), b"{}");
        let error = read_handshake_file(&link, Links::Refuse).unwrap_err();
        assert!(
            matches!(&error, FileReadError::Io(e) if e.raw_os_error() == Some(libc::ELOOP)),
            "{error}"
        );
        // A FIFO with no writer: refused at once (a blocking open would never return).
        let fifo = dir.0.join("fifo.json");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        assert!(matches!(
            read_handshake_file(&fifo, Links::Follow),
            Err(FileReadError::NotRegular)
        ));
        // A device that never ends, and a directory.
        let zero = Path::new("/dev/zero");
        assert!(matches!(
            read_handshake_file(zero, Links::Follow),
            Err(FileReadError::NotRegular)
        ));
        assert!(matches!(
            read_handshake_file(&dir.0, Links::Follow),
            Err(FileReadError::NotRegular)
        ));
        // Exactly the cap is read; one byte more is refused, with its size.
        let big = dir.0.join("big.json");
        let cap = usize::try_from(MAX_HANDSHAKE_FILE_LEN).unwrap();
        fs::write(&big, vec![b' '; cap]).unwrap();
        assert_eq!(read_handshake_file(&big, Links::Refuse).unwrap().len(), cap);
        fs::write(&big, vec![b' '; cap + 1]).unwrap();
        let error = read_handshake_file(&big, Links::Refuse).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("larger than {cap} bytes (at least {})", cap + 1)
        );
    }

    #[test]
    fn a_watch_reads_when_the_stat_changes_and_has_news_only_when_the_bytes_do() {
        let dir = TempDir::new();
        let path = dir.0.join("kernel-1.json");
        write_private_atomic(&path, b"{\"registration\": 1}").unwrap();
        let mut watch = FileWatch::new(path.clone(), b"{\"registration\": 1}".to_vec());
        assert_eq!(watch.path(), path);
        assert_eq!(watch.changed(), None, "nothing changed");
        // The kernel rewrites it in place (as ipykernel does): first half of it, then all.
        fs::write(&path, b"{\"shell_port\":").unwrap();
        assert_eq!(watch.changed().as_deref(), Some(&b"{\"shell_port\":"[..]));
        assert_eq!(watch.changed(), None, "read once per change");
        fs::write(&path, b"{\"shell_port\": 5}").unwrap();
        assert_eq!(
            watch.changed().as_deref(),
            Some(&b"{\"shell_port\": 5}"[..]),
            "the rest of a half-written file is read again"
        );
        // Replaced by the same bytes (a new inode, a new time): read, but no news.
        write_private_atomic(&path, b"{\"shell_port\": 5}").unwrap();
        assert_eq!(watch.changed(), None);
        // Over the cap: no news, and not read again while its stat stays.
        let cap = usize::try_from(MAX_HANDSHAKE_FILE_LEN).unwrap();
        write_private_atomic(&path, &vec![b' '; cap + 1]).unwrap();
        assert_eq!(watch.changed(), None);
        #[cfg(unix)]
        {
            // A link to a file with other bytes, planted in its place: never followed.
            let target = dir.0.join("elsewhere.json");
            fs::write(&target, b"{\"b\": 3}").unwrap();
            fs::remove_file(&path).unwrap();
            std::os::unix::fs::symlink(&target, &path).unwrap();
            assert_eq!(watch.changed(), None);
        }
        // Gone: no news, no error.
        fs::remove_file(&path).unwrap();
        assert_eq!(watch.changed(), None);
    }

    #[test]
    fn runtime_dir_follows_jupyter_core() {
        let env = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, OsString> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), OsString::from(v)))
                .collect();
            move |name: &str| map.get(name).cloned()
        };
        let linux = |pairs: &[(&str, &str)]| runtime_dir_with(env(pairs), "linux");
        assert_eq!(
            linux(&[("JUPYTER_RUNTIME_DIR", "/rt"), ("HOME", "/h")]),
            PathBuf::from("/rt")
        );
        assert_eq!(
            linux(&[("JUPYTER_RUNTIME_DIR", ""), ("HOME", "/h")]),
            PathBuf::from("/h/.local/share/jupyter/runtime")
        );
        assert_eq!(
            linux(&[("JUPYTER_DATA_DIR", "/data"), ("HOME", "/h")]),
            PathBuf::from("/data/runtime")
        );
        assert_eq!(
            linux(&[("XDG_DATA_HOME", "/xdg"), ("HOME", "/h")]),
            PathBuf::from("/xdg/jupyter/runtime")
        );
        // XDG_RUNTIME_DIR is ignored, as in jupyter_core 5.
        assert_eq!(
            linux(&[("XDG_RUNTIME_DIR", "/run/user/1"), ("HOME", "/h")]),
            PathBuf::from("/h/.local/share/jupyter/runtime")
        );
        assert_eq!(
            runtime_dir_with(env(&[("HOME", "/Users/u")]), "macos"),
            PathBuf::from("/Users/u/Library/Jupyter/runtime")
        );
        assert!(
            runtime_dir().ends_with("runtime") || std::env::var_os("JUPYTER_RUNTIME_DIR").is_some()
        );
    }

    #[test]
    fn keys_and_session_ids_are_random_and_well_formed() {
        let a = random_key();
        let b = random_key();
        assert_ne!(a, b);
        let text = a.expose_secret();
        assert_eq!(text.len(), 32);
        assert!(
            text.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        );

        let id = new_session_id();
        assert_ne!(id, new_session_id());
        let groups: Vec<&str> = id.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(groups[2].starts_with('4'));
        assert!(matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
        assert!(id.bytes().all(|c| c == b'-' || c.is_ascii_hexdigit()));
        assert_eq!(id, id.to_lowercase());
    }
}
