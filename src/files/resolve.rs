//! Turns a requested file name into an open file under the root, refusing
//! anything that would leave it.
//!
//! Names are normalised the way PXE clients need (backslashes as slashes,
//! a leading `/` relative to the root), `..` is refused outright, and the
//! final open uses `openat2(RESOLVE_BENEATH)`, so no symlink, however
//! nested, can point outside the root.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Why a request cannot be served. Messages never reveal server paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("File not found")]
    NotFound,
    #[error("Access violation")]
    Refused,
    /// The file is being written right now and could not be read whole.
    #[error("File is being changed, try again")]
    Busy,
    /// The process ran out of file descriptors (or the system did).
    #[error("Server busy, try again")]
    Overloaded,
    /// A netascii read of a file larger than `cache::NETASCII_MAX_BYTES`.
    #[error("File too large for netascii mode, ask for octet")]
    TooLargeForNetascii,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RootOptions {
    /// Lowercase every requested name (dnsmasq's `tftp-lowercase`).
    pub lowercase: bool,
    /// When a name is not found as given, look for it ignoring ASCII case.
    pub case_insensitive: bool,
    /// Serve only files owned by the user the server runs as (dnsmasq's
    /// `tftp-secure`).
    pub owned_only: bool,
}

/// The directory served, opened once.
#[derive(Debug)]
pub struct Root {
    dir: OwnedFd,
    path: PathBuf,
    options: RootOptions,
}

/// Longest normalised relative path accepted.
const MAX_PATH: usize = 1024;

impl Root {
    pub fn open(path: &Path, options: RootOptions) -> io::Result<Root> {
        let dir = File::open(path)?;
        if !dir.metadata()?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            ));
        }
        Ok(Root {
            dir: dir.into(),
            path: path.to_path_buf(),
            options,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the requested file for reading. Returns the file and its
    /// normalised name relative to the root (for logs and cache keys).
    pub fn open_file(&self, requested: &[u8]) -> Result<(File, String), ResolveError> {
        let mut name = normalise(requested)?;
        if self.options.lowercase {
            name.make_ascii_lowercase();
        }
        let (file, name) = match open_beneath(&self.dir, &name) {
            Err(ResolveError::NotFound) if self.options.case_insensitive => {
                let found = self
                    .find_ignoring_case(&name)
                    .ok_or(ResolveError::NotFound)?;
                (open_beneath(&self.dir, &found)?, found)
            }
            other => (other?, name),
        };
        if self.options.owned_only {
            use std::os::unix::fs::MetadataExt;
            // SAFETY: geteuid has no preconditions.
            let me = unsafe { libc::geteuid() };
            if file.metadata().map(|m| m.uid()).ok() != Some(me) {
                return Err(ResolveError::Refused);
            }
        }
        Ok((file, name))
    }

    /// Path of a new file for an upload: the normalised name, which must
    /// not exist yet (uploads never overwrite).
    pub fn upload_path(&self, requested: &[u8]) -> Result<(PathBuf, String), ResolveError> {
        let name = normalise(requested)?;
        let full = self.path.join(&name);
        // The parent must exist inside the root (checked through its fd).
        let parent = name.rsplit_once('/').map(|(p, _)| p).unwrap_or(".");
        drop(open_beneath_flags(
            &self.dir,
            parent,
            libc::O_DIRECTORY | libc::O_PATH,
        )?);
        match std::fs::symlink_metadata(&full) {
            Ok(_) => Err(ResolveError::Refused),
            Err(_) => Ok((full, name)),
        }
    }

    /// Whether `name` (one path component, e.g. a client's address) is a
    /// directory under the root.
    pub fn has_dir(&self, name: &str) -> bool {
        normalise(name.as_bytes()).is_ok_and(|n| {
            !n.contains('/')
                && open_beneath_flags(&self.dir, &n, libc::O_DIRECTORY | libc::O_PATH).is_ok()
        })
    }

    fn find_ignoring_case(&self, name: &str) -> Option<String> {
        let mut found = String::new();
        for part in name.split('/') {
            let dir = self.path.join(&found);
            let entry = std::fs::read_dir(dir)
                .ok()?
                .filter_map(|e| e.ok())
                .find(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case(part))
                })?;
            if !found.is_empty() {
                found.push('/');
            }
            found.push_str(entry.file_name().to_str()?);
        }
        Some(found)
    }
}

/// Normalises a requested name to a relative path without `.`/`..` parts.
pub fn normalise(requested: &[u8]) -> Result<String, ResolveError> {
    let text = std::str::from_utf8(requested).map_err(|_| ResolveError::Refused)?;
    if text.bytes().any(|b| b == 0 || b.is_ascii_control()) {
        return Err(ResolveError::Refused);
    }
    let mut out = String::with_capacity(text.len());
    for part in text.split(['/', '\\']) {
        match part {
            "" | "." => continue,
            ".." => return Err(ResolveError::Refused),
            _ => {
                if !out.is_empty() {
                    out.push('/');
                }
                out.push_str(part);
            }
        }
    }
    if out.is_empty() || out.len() > MAX_PATH {
        return Err(ResolveError::NotFound);
    }
    Ok(out)
}

fn open_beneath(dir: &OwnedFd, name: &str) -> Result<File, ResolveError> {
    // O_NONBLOCK: opening a FIFO planted in the root must not hang a shard.
    let file = open_beneath_flags(
        dir,
        name,
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
    )?;
    let meta = file.metadata().map_err(|_| ResolveError::NotFound)?;
    if !meta.is_file() {
        return Err(if meta.is_dir() {
            ResolveError::NotFound
        } else {
            ResolveError::Refused
        });
    }
    Ok(file)
}

fn open_beneath_flags(dir: &OwnedFd, name: &str, flags: i32) -> Result<File, ResolveError> {
    let c_name = CString::new(name).map_err(|_| ResolveError::Refused)?;
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: `c_name` is a valid NUL-terminated string and `how` a valid
    // open_how whose size we pass; the kernel reads both during the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c_name.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(match io::Error::last_os_error().raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ENAMETOOLONG) => {
                ResolveError::NotFound
            }
            Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOMEM) => {
                ResolveError::Overloaded
            }
            // EXDEV: the path tried to leave the root; EACCES/EPERM/ELOOP...
            _ => ResolveError::Refused,
        });
    }
    // SAFETY: the kernel just returned this descriptor to us; we own it.
    Ok(unsafe { File::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_names() {
        assert_eq!(normalise(b"pxelinux.0").unwrap(), "pxelinux.0");
        assert_eq!(
            normalise(b"/boot//x86\\grub.efi").unwrap(),
            "boot/x86/grub.efi"
        );
        assert_eq!(normalise(b"./a/./b").unwrap(), "a/b");
        assert_eq!(normalise(b"../etc/passwd"), Err(ResolveError::Refused));
        assert_eq!(normalise(b"a\\..\\..\\x"), Err(ResolveError::Refused));
        assert_eq!(normalise(b"/"), Err(ResolveError::NotFound));
        assert_eq!(normalise(b"a\nb"), Err(ResolveError::Refused));
        assert_eq!(normalise(&[0xff, 0xfe]), Err(ResolveError::Refused));
    }

    #[test]
    fn stays_beneath_the_root() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"x").unwrap();
        let root_dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(root_dir.path().join("sub")).unwrap();
        std::fs::write(root_dir.path().join("sub/File.BIN"), b"ok").unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret"),
            root_dir.path().join("escape"),
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc", root_dir.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("sub/File.BIN", root_dir.path().join("inside")).unwrap();
        let root = Root::open(root_dir.path(), RootOptions::default()).unwrap();
        assert!(root.open_file(b"/sub/File.BIN").is_ok());
        assert!(
            root.open_file(b"inside").is_ok(),
            "a symlink within the root is fine"
        );
        assert_eq!(
            root.open_file(b"escape").unwrap_err(),
            ResolveError::Refused
        );
        assert_eq!(
            root.open_file(b"etc/passwd").unwrap_err(),
            ResolveError::Refused
        );
        assert_eq!(root.open_file(b"sub").unwrap_err(), ResolveError::NotFound);
        assert_eq!(
            root.open_file(b"sub/file.bin").unwrap_err(),
            ResolveError::NotFound
        );
        let ci = Root::open(
            root_dir.path(),
            RootOptions {
                case_insensitive: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(ci.open_file(b"SUB\\file.bin").unwrap().1, "sub/File.BIN");
        assert_eq!(ci.open_file(b"ESCAPE").unwrap_err(), ResolveError::Refused);
    }
}
