//! The pull target directory, handled through directory handles with no-follow semantics.
//!
//! The target is untrusted: other processes (or a hostile earlier manifest) may have put
//! symlinks, FIFOs or foreign files in it, and may swap entries while a pull runs. Every
//! operation below therefore starts from a handle on the target root and walks relative
//! paths one segment at a time with `openat(O_NOFOLLOW | O_DIRECTORY)`; the last segment is
//! only ever touched with `*at` calls that do not follow symlinks (`fstatat` with
//! `AT_SYMLINK_NOFOLLOW`, `linkat`, `renameat`, `unlinkat`, `openat(O_CREAT | O_EXCL)`).
//! So a symlink planted anywhere in the target, before or during a pull, is never written
//! through: an intermediate one is refused, a final one is replaced by rename.
//!
//! Invariants:
//! - every relative path used here has passed [`crate::manifest::validate_path`];
//! - files appear at their final name only by `renameat` of a complete temporary file
//!   named `.mvault-<8 hex>.tmp` (20 bytes, so any legal file name still fits);
//! - copies are created with mode `0o666` minus the process umask, like `cp`;
//! - a pull holds [`TargetDir::lock`] from reading the state record until the record (and
//!   signature) is written, so temporary names present while it holds the lock belong to a
//!   killed pull and may be swept ([`TargetDir::remove_stale_temps`]).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::chunk::Digest;
use crate::manifest::RESERVED_SEGMENT;

/// Why an operation on the target failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: is a symlink; refusing to follow it inside a pull target (remove it)")]
    Symlink { path: String },
    #[error("{path}: exists and is not a directory; remove it or pull elsewhere")]
    NotADirectory { path: String },
    /// A directory appeared at a file's path after the plan (the plan refuses one it sees).
    #[error(
        "{path}: is a directory, the model has a file there; move it away and pull again, or \
         pull elsewhere"
    )]
    Occupied { path: String },
    #[error("{path}: is not a regular file; remove it")]
    NotRegular { path: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// What is at a path in the target, looked at without following symlinks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Missing,
    /// A regular file: size in bytes, mtime in nanoseconds since the epoch.
    File {
        size: u64,
        mtime_ns: i128,
    },
    Dir,
    /// A symlink, FIFO, socket or device.
    Other,
    /// Unreachable: `ancestor` (a relative path, a proper prefix of the path asked about) is
    /// a symlink (`symlink`) or another non-directory where a directory should be.
    Blocked {
        ancestor: String,
        symlink: bool,
    },
}

impl Entry {
    fn of(st: &rustix::fs::Stat) -> Entry {
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => Entry::File {
                size: st.st_size as u64,
                mtime_ns: st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128,
            },
            FileType::Directory => Entry::Dir,
            _ => Entry::Other,
        }
    }
}

/// A state record (or signature) file under `.mvault/`, as read.
#[derive(Debug, PartialEq, Eq)]
pub enum Record {
    Absent,
    /// Something mvault did not write: a symlink, a special file, or an oversized file.
    Unusable,
    Bytes(Vec<u8>),
}

/// How far [`TargetDir::walk`] got along a chain of directories.
enum Walk {
    Dir(OwnedFd),
    /// A directory is missing (and was not to be created).
    Missing,
    /// `walked` (relative) is a symlink or not a directory.
    Blocked {
        walked: String,
        symlink: bool,
    },
}

/// A directory's handle and its names, each with what it is ([`TargetDir::list`]).
type Listing = (OwnedFd, Vec<(String, Entry)>);

/// Name of the lock file under `.mvault/` (records are `<model>.json` and `<model>.sig`).
const LOCK_FILE: &str = "pull.lock";

/// True for the names [`temp_name`] makes: `.mvault-` + 8 lowercase hex digits + `.tmp`.
pub(crate) fn is_temp_name(name: &[u8]) -> bool {
    name.len() == 20
        && name.starts_with(b".mvault-")
        && name.ends_with(b".tmp")
        && name[8..16]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// An open pull target.
pub struct TargetDir {
    root: PathBuf,
    fd: OwnedFd,
    /// The locked `.mvault/pull.lock` once [`TargetDir::lock`] took it: held as long as this
    /// handle lives, so as long as any blocking placement that holds the handle still runs
    /// (an abandoned pull future, a Python Ctrl-C, leaves those to finish).
    lock: std::sync::OnceLock<File>,
}

fn io_err(path: impl Into<String>) -> impl FnOnce(Errno) -> Error {
    let path = path.into();
    move |e| Error::Io {
        path,
        source: e.into(),
    }
}

/// A fresh temporary name for a file being placed (short, so any legal name still fits).
fn temp_name() -> String {
    format!(".mvault-{:08x}.tmp", fastrand::u32(..))
}

const DIR_FLAGS: OFlags = OFlags::DIRECTORY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::RDONLY)
    .union(OFlags::CLOEXEC);

impl TargetDir {
    /// Creates (if needed) and opens the target root. The root itself may be a symlink (the
    /// user chose it); everything below it is walked without following any.
    pub fn open(root: &Path) -> Result<TargetDir> {
        let shown = root.display().to_string();
        if std::fs::symlink_metadata(root).is_ok_and(|m| !m.is_dir() && !m.is_symlink()) {
            return Err(Error::NotADirectory { path: shown });
        }
        std::fs::create_dir_all(root).map_err(|e| Error::Io {
            path: shown.clone(),
            source: e,
        })?;
        let fd = rustix::fs::open(
            root,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err(shown))?;
        Ok(TargetDir {
            root: root.to_path_buf(),
            fd,
            lock: std::sync::OnceLock::new(),
        })
    }

    /// The target root as given.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn shown(&self, rel: &str) -> String {
        self.root.join(rel).display().to_string()
    }

    /// A handle on the directory holding `rel`, and `rel`'s last segment. With `create`,
    /// missing directories are made; without it, a missing one gives `Ok(None)`.
    fn parent<'r>(&self, rel: &'r str, create: bool) -> Result<Option<(OwnedFd, &'r str)>> {
        let (dirs, name) = match rel.rsplit_once('/') {
            Some((d, n)) => (Some(d), n),
            None => (None, rel),
        };
        match self.walk(dirs, create)? {
            Walk::Dir(fd) => Ok(Some((fd, name))),
            Walk::Missing => Ok(None),
            Walk::Blocked {
                walked,
                symlink: true,
            } => Err(Error::Symlink {
                path: self.shown(&walked),
            }),
            Walk::Blocked { walked, .. } => Err(Error::NotADirectory {
                path: self.shown(&walked),
            }),
        }
    }

    /// Opens the directory `dirs` (relative; `None` is the root) one segment at a time,
    /// never following a symlink, making missing ones with `create`.
    fn walk(&self, dirs: Option<&str>, create: bool) -> Result<Walk> {
        let mut cur = rustix::fs::openat(&self.fd, ".", DIR_FLAGS, Mode::empty())
            .map_err(io_err(self.shown("")))?;
        let mut walked = String::new();
        for seg in dirs.into_iter().flat_map(|d| d.split('/')) {
            if !walked.is_empty() {
                walked.push('/');
            }
            walked.push_str(seg);
            let opened = match rustix::fs::openat(&cur, seg, DIR_FLAGS, Mode::empty()) {
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&cur, seg, Mode::from_raw_mode(0o777)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(io_err(self.shown(&walked))(e)),
                    }
                    rustix::fs::openat(&cur, seg, DIR_FLAGS, Mode::empty())
                }
                Err(Errno::NOENT) => return Ok(Walk::Missing),
                other => other,
            };
            cur = match opened {
                Ok(fd) => fd,
                Err(e) => {
                    // Name why `seg` could not be opened as a directory.
                    return match rustix::fs::statat(&cur, seg, AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::Directory => {
                            Ok(Walk::Blocked {
                                walked,
                                symlink: FileType::from_raw_mode(st.st_mode) == FileType::Symlink,
                            })
                        }
                        _ => Err(io_err(self.shown(&walked))(e)),
                    };
                }
            };
        }
        Ok(Walk::Dir(cur))
    }

    /// What is at `rel`, without following symlinks. An unreachable parent (a file or a
    /// symlink where a directory should be) reports [`Entry::Blocked`], naming it.
    pub fn entry(&self, rel: &str) -> Result<Entry> {
        let (dirs, name) = match rel.rsplit_once('/') {
            Some((d, n)) => (Some(d), n),
            None => (None, rel),
        };
        let dir = match self.walk(dirs, false)? {
            Walk::Dir(fd) => fd,
            Walk::Missing => return Ok(Entry::Missing),
            Walk::Blocked { walked, symlink } => {
                return Ok(Entry::Blocked {
                    ancestor: walked,
                    symlink,
                });
            }
        };
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Entry::of(&st)),
            Err(Errno::NOENT) => Ok(Entry::Missing),
            Err(e) => Err(io_err(self.shown(rel))(e)),
        }
    }

    /// The names in directory `dirs` (relative; `None` is the root), each with what it is;
    /// `None` when the directory cannot be reached.
    fn list(&self, dirs: Option<&str>) -> Result<Option<Listing>> {
        let Walk::Dir(fd) = self.walk(dirs, false)? else {
            return Ok(None);
        };
        let shown = self.shown(dirs.unwrap_or(""));
        let mut out = Vec::new();
        for e in rustix::fs::Dir::read_from(&fd).map_err(io_err(shown.clone()))? {
            let e = e.map_err(io_err(shown.clone()))?;
            let Ok(name) = e.file_name().to_str() else {
                out.push((
                    String::from_utf8_lossy(e.file_name().to_bytes()).into(),
                    Entry::Other,
                ));
                continue;
            };
            if name == "." || name == ".." {
                continue;
            }
            match rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => out.push((name.to_string(), Entry::of(&st))),
                Err(Errno::NOENT) => {} // removed meanwhile
                Err(e) => return Err(io_err(format!("{shown}/{name}"))(e)),
            }
        }
        Ok(Some((fd, out)))
    }

    /// The first entry under directory `rel` that `ours(path, entry)` does not accept for a
    /// regular file, or that is a symlink, special file or an empty directory (which removing
    /// `ours` files would not clear); `rel` itself when it is empty. `None` means that
    /// deleting the accepted files (and the directories that leaves empty) removes `rel`.
    /// Walked without following symlinks.
    pub fn foreign_below(
        &self,
        rel: &str,
        ours: impl Fn(&str, &Entry) -> bool,
    ) -> Result<Option<String>> {
        let mut stack = vec![rel.to_string()];
        while let Some(d) = stack.pop() {
            let Some((_, names)) = self.list(Some(&d))? else {
                return Ok(Some(d)); // swapped for something else meanwhile
            };
            if names.is_empty() {
                return Ok(Some(d));
            }
            for (name, entry) in names {
                let path = format!("{d}/{name}");
                match entry {
                    Entry::Dir => stack.push(path),
                    Entry::File { .. } if ours(&path, &entry) => {}
                    _ => return Ok(Some(path)),
                }
            }
        }
        Ok(None)
    }

    /// Removes, in directory `dirs` (relative; `None` is the root), regular files named as
    /// [`temp_name`] makes them: what a pull killed while placing left behind. Call only
    /// while holding [`TargetDir::lock`] (so no running pull owns them). Best effort: an
    /// unreachable directory or a failed removal is left as it is.
    pub fn remove_stale_temps(&self, dirs: Option<&str>) -> Result<()> {
        let Some((fd, names)) = self.list(dirs)? else {
            return Ok(());
        };
        for (name, entry) in names {
            if matches!(entry, Entry::File { .. }) && is_temp_name(name.as_bytes()) {
                let _ = rustix::fs::unlinkat(&fd, name.as_str(), AtFlags::empty());
            }
        }
        Ok(())
    }

    /// Takes the target's exclusive lock (`flock` on `.mvault/pull.lock`, made if needed and
    /// opened without following a symlink) for as long as this handle lives, waiting, with
    /// one line of information, while another pull holds it. Returns whether it is held
    /// (only then are temporary names proven to be a killed pull's). Call once per handle.
    /// Blocking: call off the async runtime.
    ///
    /// A target this process cannot write (a read-only mount, say, where a container finds
    /// its models already pulled) is not locked: no pull of ours can change it, and one that
    /// needs to place a file fails there with its own error. Nor is one on a filesystem
    /// without locks (a warning): there pulls run as they did before the lock existed.
    pub fn lock(&self) -> Result<bool> {
        let unwritable = |e: &Error| {
            matches!(e, Error::Io { source, .. }
                if matches!(source.raw_os_error(), Some(libc::EROFS | libc::EACCES | libc::EPERM)))
        };
        let dir = match self.records_dir(true) {
            Ok(dir) => dir.expect("created"),
            Err(e) if unwritable(&e) => return Ok(false),
            Err(e) => return Err(e),
        };
        let shown = self.shown(&format!("{RESERVED_SEGMENT}/{LOCK_FILE}"));
        // Read-write: NFS emulates flock with POSIX locks, whose exclusive kind needs it.
        let flags =
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&dir, LOCK_FILE, flags, Mode::from_raw_mode(0o666)) {
            Ok(fd) => fd,
            Err(Errno::LOOP) => return Err(Error::Symlink { path: shown }),
            Err(Errno::ROFS | Errno::ACCESS | Errno::PERM) => {
                return Ok(false);
            }
            Err(e) => return Err(io_err(shown)(e)),
        };
        let st = rustix::fs::fstat(&fd).map_err(io_err(shown.clone()))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(Error::NotRegular { path: shown });
        }
        let file = File::from(fd);
        let locked = match file.try_lock() {
            Ok(()) => Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => {
                // Shown by default (not `-q`): a pull that seems to hang should say why.
                tracing::warn!(
                    "Blocking waiting for another pull into {} to finish",
                    self.root.display()
                );
                file.lock()
            }
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        };
        match locked {
            Ok(()) => Ok(self.lock.set(file).is_ok()),
            // A filesystem without locks (some network mounts): pull as before there were any.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOLCK | libc::ENOSYS | libc::EOPNOTSUPP | libc::EBADF)
                ) =>
            {
                tracing::warn!("{shown}: cannot be locked ({e}); pulling without the lock");
                Ok(false)
            }
            Err(source) => Err(Error::Io {
                path: shown,
                source,
            }),
        }
    }

    /// BLAKE3 of the regular file at `rel` (opened without following symlinks).
    pub fn hash(&self, rel: &str) -> Result<Digest> {
        let Some((dir, name)) = self.parent(rel, false)? else {
            return Err(io_err(self.shown(rel))(Errno::NOENT));
        };
        match hash_at(&dir, name) {
            Ok(Some(d)) => Ok(d),
            Ok(None) => Err(Error::NotRegular {
                path: self.shown(rel),
            }),
            Err(source) => Err(Error::Io {
                path: self.shown(rel),
                source,
            }),
        }
    }

    /// Places `blob` at `rel`: hard link (`copy == false`, falls back to a copy across
    /// filesystems unless `hard_only`) or copy to a temporary name in the same directory,
    /// then, if `expect` is given, checks that the placed bytes hash to it, then renames
    /// over `rel`. Returns `Ok(false)` (nothing placed) when the check fails or the blob is
    /// not a regular file (a symlink, say): the blob is damaged. The blob missing is an I/O
    /// error of kind `NotFound`. A directory at `rel` (the plan refuses those it sees; one
    /// may appear since) is [`Error::Occupied`].
    pub fn place(
        &self,
        rel: &str,
        blob: &Path,
        mode: LinkMode,
        expect: Option<&Digest>,
    ) -> Result<bool> {
        let (dir, name) = self.parent(rel, true)?.expect("created");
        let tmp = temp_name();
        let shown = self.shown(rel);
        let placed = self
            .put_temp(&dir, &tmp, blob, mode)
            .and_then(|regular| match expect {
                Some(d) if regular => hash_at(&dir, &tmp).map(|got| got == Some(*d)),
                _ => Ok(regular),
            });
        let ok = match placed {
            Ok(true) => match rustix::fs::renameat(&dir, &tmp, &dir, name) {
                Ok(()) => Ok(true),
                Err(Errno::ISDIR | Errno::NOTEMPTY) => Err(Error::Occupied {
                    path: shown.clone(),
                }),
                Err(e) => Err(io_err(shown.clone())(e)),
            },
            Ok(false) => Ok(false),
            Err(source) => Err(Error::Io {
                path: shown.clone(),
                source,
            }),
        };
        // Renaming a link onto another link of the same inode succeeds without removing
        // the source name, so remove it in every case.
        let _ = rustix::fs::unlinkat(&dir, &tmp, AtFlags::empty());
        ok
    }

    /// Links or copies `blob` to `tmp` in `dir`; `Ok(false)` when a copy finds the blob is
    /// not a regular file (a hard link of a symlink is caught by the caller's hash).
    fn put_temp(&self, dir: &OwnedFd, tmp: &str, blob: &Path, mode: LinkMode) -> io::Result<bool> {
        if mode != LinkMode::Copy {
            match rustix::fs::linkat(CWD, blob, dir, tmp, AtFlags::empty()) {
                Ok(()) => return Ok(true),
                Err(e) if mode == LinkMode::Hard || e != Errno::XDEV => return Err(e.into()),
                Err(_) => {} // another filesystem: copy
            }
        }
        let src = match rustix::fs::open(
            blob,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::LOOP) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        if FileType::from_raw_mode(rustix::fs::fstat(&src)?.st_mode) != FileType::RegularFile {
            return Ok(false);
        }
        let fd = rustix::fs::openat(
            dir,
            tmp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            // The kernel applies the umask: 0644 under umask 022, as `cp` does.
            Mode::from_raw_mode(0o666),
        )?;
        let mut dst = File::from(fd);
        // `io::copy` uses copy_file_range, which reflinks where the filesystem can.
        io::copy(&mut File::from(src), &mut dst)?;
        Ok(true)
    }

    /// Removes the regular file at `rel` (never a directory or what a symlink points to),
    /// then every parent directory this leaves empty. A missing file is not an error.
    pub fn remove_file(&self, rel: &str) -> Result<()> {
        let Some((dir, name)) = self.parent(rel, false)? else {
            return Ok(());
        };
        match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(io_err(self.shown(rel))(e)),
        }
        let mut path = rel;
        while let Some((parent, _)) = path.rsplit_once('/') {
            let Ok(Some((pdir, pname))) = self.parent(parent, false) else {
                break;
            };
            if rustix::fs::unlinkat(&pdir, pname, AtFlags::REMOVEDIR).is_err() {
                break; // not empty (or not ours to remove): stop
            }
            path = parent;
        }
        Ok(())
    }

    /// Reads `.mvault/<file>`. A symlink, special file or oversized file there is
    /// [`Record::Unusable`] (never followed or read). A `.mvault` that is a symlink or not a
    /// directory is refused.
    pub fn read_record(&self, file: &str) -> Result<Record> {
        let Some(dir) = self.records_dir(false)? else {
            return Ok(Record::Absent);
        };
        let shown = self.shown(&format!("{RESERVED_SEGMENT}/{file}"));
        let fd = match rustix::fs::openat(
            &dir,
            file,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(Record::Absent),
            Err(Errno::LOOP) => return Ok(Record::Unusable), // a symlink
            Err(e) => return Err(io_err(shown)(e)),
        };
        let st = rustix::fs::fstat(&fd).map_err(io_err(shown.clone()))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
            || st.st_size > MAX_RECORD_BYTES
        {
            return Ok(Record::Unusable);
        }
        let mut buf = Vec::with_capacity(st.st_size as usize);
        io::Read::read_to_end(
            &mut io::Read::take(File::from(fd), MAX_RECORD_BYTES as u64),
            &mut buf,
        )
        .map_err(|e| Error::Io {
            path: shown,
            source: e,
        })?;
        Ok(Record::Bytes(buf))
    }

    /// Writes `.mvault/<file>` atomically (temporary file, then rename).
    pub fn write_record(&self, file: &str, bytes: &[u8]) -> Result<()> {
        let dir = self.records_dir(true)?.expect("created");
        let shown = self.shown(&format!("{RESERVED_SEGMENT}/{file}"));
        let tmp = temp_name();
        let written = rustix::fs::openat(
            &dir,
            &tmp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        )
        .map_err(io::Error::from)
        .and_then(|fd| io::Write::write_all(&mut File::from(fd), bytes))
        .and_then(|()| rustix::fs::renameat(&dir, &tmp, &dir, file).map_err(io::Error::from));
        if written.is_err() {
            let _ = rustix::fs::unlinkat(&dir, &tmp, AtFlags::empty());
        }
        written.map_err(|source| Error::Io {
            path: shown,
            source,
        })
    }

    /// Removes `.mvault/<file>` if present (a stale record of an earlier pull).
    pub fn remove_record(&self, file: &str) -> Result<()> {
        let Some(dir) = self.records_dir(false)? else {
            return Ok(());
        };
        match rustix::fs::unlinkat(&dir, file, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(io_err(self.shown(&format!("{RESERVED_SEGMENT}/{file}")))(e)),
        }
    }

    fn records_dir(&self, create: bool) -> Result<Option<OwnedFd>> {
        let probe = format!("{RESERVED_SEGMENT}/x");
        Ok(self.parent(&probe, create)?.map(|(fd, _)| fd))
    }
}

/// Largest target state record read, in bytes (a record lists paths, sizes and digests).
const MAX_RECORD_BYTES: i64 = 256 << 20;

/// How a blob becomes a target file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinkMode {
    /// Hard link when the cache is on the same filesystem, copy otherwise.
    #[default]
    Auto,
    /// Hard link only.
    Hard,
    /// An independent copy.
    Copy,
}

/// BLAKE3 of the regular file `name` in `dir`, opened without following symlinks; `None`
/// when `name` is a symlink or not a regular file.
fn hash_at(dir: &impl AsFd, name: &str) -> io::Result<Option<Digest>> {
    let fd = match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::LOOP) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Ok(None);
    }
    let mut h = blake3::Hasher::new();
    h.update_reader(File::from(fd))?;
    Ok(Some(h.finalize().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_recognized_exactly() {
        for _ in 0..100 {
            assert!(is_temp_name(temp_name().as_bytes()));
        }
        for other in [
            ".mvault-0123ABCD.tmp",
            ".mvault-0123abc.tmp",
            ".mvault-0123abcde.tmp",
            ".mvault-0123abcg.tmp",
            "x.mvault-0123abcd.tmp",
            ".mvault-0123abcd.tmpx",
        ] {
            assert!(!is_temp_name(other.as_bytes()), "{other}");
        }
    }
}
