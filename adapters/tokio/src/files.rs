//! Files, directories and randomness: what the core leaves to its drivers.
//!
//! * [`write_private_atomic`]: complete or absent (temporary file, `fsync`, rename), and on Unix
//!   mode `0600` from the first byte. On Windows there is no mode: the file inherits the ACL of
//!   its directory, and the default directory ([`runtime_dir`], under `%APPDATA%`) is in the
//!   user's profile, whose ACL grants access to the user, `SYSTEM` and the Administrators only.
//!   That ACL is what protects the key there (jupyter_core additionally rewrites the file's own
//!   ACL through pywin32; this crate does not). Pass a [`dir`](crate::LaunchOptions::dir) only
//!   if it is as private.
//! * [`FileWatch`]: how the launcher watches the file it handed over, without trusting it: `stat`
//!   first (length and mtime; nothing is read when neither changed), regular files only, never
//!   through a symlink, at most [`MAX_FILE_LEN`] bytes.
//! * [`random_key`] and [`new_session_id`]: from the OS's secure random number generator.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use jupyter_handshake::Key;

/// The longest file the launcher reads back: a connection file is a few hundred bytes.
pub const MAX_FILE_LEN: u64 = 64 * 1024;

/// Writes `bytes` to `path` atomically, owner-only on Unix (see the [module docs](self)).
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use jupyter_handshake_tokio::files;
/// let dir = std::env::temp_dir().join(format!("doc-{}", files::new_session_id()));
/// files::create_private_dir(&dir)?;
/// let path = dir.join("kernel-1.json");
/// files::write_private_atomic(&path, b"{}")?;
/// assert_eq!(std::fs::read(&path)?, b"{}");
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
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
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    drop(file);
    if let Err(error) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(error);
    }
    Ok(())
}

/// Creates `dir` and its missing parents, mode `0700` on Unix; an existing one is left as is.
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

/// The Jupyter runtime directory, jupyter_core 5's rule: `$JUPYTER_RUNTIME_DIR`, else
/// `{data}/runtime` with data `$JUPYTER_DATA_DIR`, else `%APPDATA%\jupyter` on Windows,
/// `~/Library/Jupyter` on macOS, `$XDG_DATA_HOME/jupyter` (`~/.local/share/jupyter`) elsewhere.
pub fn runtime_dir() -> PathBuf {
    let set = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = set("JUPYTER_RUNTIME_DIR") {
        return dir;
    }
    let home = || {
        set(if cfg!(windows) { "USERPROFILE" } else { "HOME" }).unwrap_or_else(std::env::temp_dir)
    };
    let data = set("JUPYTER_DATA_DIR").unwrap_or_else(|| {
        if cfg!(windows) {
            set("APPDATA").map_or_else(
                || home().join(".jupyter").join("data"),
                |a| a.join("jupyter"),
            )
        } else if cfg!(target_os = "macos") {
            home().join("Library").join("Jupyter")
        } else {
            set("XDG_DATA_HOME")
                .unwrap_or_else(|| home().join(".local").join("share"))
                .join("jupyter")
        }
    });
    data.join("runtime")
}

/// A fresh connection key: 16 random bytes as 32 lowercase hex characters.
///
/// # Panics
///
/// If the OS provides no random bytes: there is then no safe way to make a key.
pub fn random_key() -> Key {
    match random_hex(16) {
        Ok(hex) => Key::new(hex),
        Err(error) => panic!("cannot make a connection key: {error}"),
    }
}

/// A fresh session id, a version-4 UUID from the OS's random number generator.
///
/// # Panics
///
/// If the OS provides no random bytes.
pub fn new_session_id() -> String {
    let mut b = [0u8; 16];
    if let Err(error) = getrandom::fill(&mut b) {
        panic!("cannot make a session id: {error}");
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = to_hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// `n` random bytes as lowercase hex.
pub(crate) fn random_hex(n: usize) -> io::Result<String> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(to_hex(&bytes))
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The first ipc number `N` ≥ 1 not in `taken` with no file `{ip}-{N}` (ipc "ports" are file
/// name suffixes, as in jupyter_client).
pub(crate) fn free_ipc_port(ip: &str, taken: &[u16]) -> Option<u16> {
    (1..=u16::MAX).find(|n| !taken.contains(n) && !Path::new(&format!("{ip}-{n}")).exists())
}

/// The launcher's view of one file it handed to a kernel; see the [module docs](self).
#[derive(Debug)]
pub struct FileWatch {
    path: PathBuf,
    stat: Option<(u64, Option<SystemTime>)>,
    bytes: Vec<u8>,
}

impl FileWatch {
    /// Watches `path`, whose current content is `bytes` (as just written).
    pub fn new(path: PathBuf, bytes: Vec<u8>) -> Self {
        let mut watch = Self {
            path,
            stat: None,
            bytes,
        };
        watch.stat = watch.regular_stat();
        watch
    }

    /// The path watched.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's new bytes, if its length or mtime changed and its content differs from the
    /// last seen. A file that is missing, being replaced, not regular, a symlink, or longer
    /// than [`MAX_FILE_LEN`] is no news.
    pub fn changed(&mut self) -> Option<Vec<u8>> {
        let stat = self.regular_stat()?;
        if self.stat == Some(stat) {
            return None;
        }
        let bytes = self.read_bounded()?;
        self.stat = Some(stat);
        if bytes == self.bytes {
            return None;
        }
        self.bytes.clone_from(&bytes);
        Some(bytes)
    }

    /// Length and mtime of the path itself (not a symlink's target), if it is a regular file.
    fn regular_stat(&self) -> Option<(u64, Option<SystemTime>)> {
        let meta = fs::symlink_metadata(&self.path).ok()?;
        meta.file_type()
            .is_file()
            .then(|| (meta.len(), meta.modified().ok()))
    }

    /// At most [`MAX_FILE_LEN`] bytes, read from a handle that is checked to be the regular file
    /// itself (not a symlink swapped in after the `stat`).
    fn read_bounded(&self) -> Option<Vec<u8>> {
        let file = open_no_follow(&self.path).ok()?;
        if !file.metadata().ok()?.file_type().is_file() {
            return None;
        }
        let mut bytes = Vec::new();
        file.take(MAX_FILE_LEN + 1).read_to_end(&mut bytes).ok()?;
        (bytes.len() as u64 <= MAX_FILE_LEN).then_some(bytes)
    }
}

/// Opens `path` for reading without following a final symlink.
///
/// Unix: the opened file must be the very inode `lstat` names (a symlink swapped in between
/// would open its target, a different inode). Windows: `FILE_FLAG_OPEN_REPARSE_POINT` opens a
/// symlink itself, which the caller's `is_file` check then refuses.
fn open_no_follow(path: &Path) -> io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let before = fs::symlink_metadata(path)?;
        let file = File::open(path)?;
        let after = file.metadata()?;
        if before.file_type().is_symlink()
            || (before.dev(), before.ino()) != (after.dev(), after.ino())
        {
            return Err(io::Error::other("the file was replaced while being opened"));
        }
        Ok(file)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;
        OpenOptions::new()
            .read(true)
            .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
            .open(path)
    }
    #[cfg(not(any(unix, windows)))]
    {
        File::open(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("jh-tokio-files-{}", new_session_id()));
        create_private_dir(&dir).unwrap();
        dir
    }

    #[test]
    fn a_watch_reports_a_rewrite_once_and_refuses_symlinks_and_huge_files() {
        let dir = temp_dir();
        let path = dir.join("kernel.json");
        write_private_atomic(&path, b"{\"a\": 1}").unwrap();
        let mut watch = FileWatch::new(path.clone(), b"{\"a\": 1}".to_vec());
        assert_eq!(watch.changed(), None);
        write_private_atomic(&path, b"{\"a\": 22}").unwrap();
        assert_eq!(watch.changed().as_deref(), Some(&b"{\"a\": 22}"[..]));
        assert_eq!(watch.changed(), None);
        let big = vec![b' '; MAX_FILE_LEN as usize + 1];
        write_private_atomic(&path, &big).unwrap();
        assert_eq!(watch.changed(), None);
        #[cfg(unix)]
        {
            let target = dir.join("elsewhere.json");
            fs::write(&target, b"{\"b\": 3}").unwrap();
            fs::remove_file(&path).unwrap();
            std::os::unix::fs::symlink(&target, &path).unwrap();
            assert_eq!(watch.changed(), None);
            use std::os::unix::fs::PermissionsExt;
            write_private_atomic(&dir.join("mode.json"), b"{}").unwrap();
            let mode = fs::metadata(dir.join("mode.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn session_ids_are_v4_uuids_and_keys_differ() {
        let id = new_session_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(random_key().expose_secret(), random_key().expose_secret());
    }
}
