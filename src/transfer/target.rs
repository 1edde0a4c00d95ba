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
//!   named `.mvault-<8 hex>.tmp` (21 bytes, so any legal file name still fits);
//! - copies are created with mode `0o666` minus the process umask, like `cp`.

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
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// What is at a path in the target, looked at without following symlinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}

/// An open pull target.
pub struct TargetDir {
    root: PathBuf,
    fd: OwnedFd,
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
        let mut cur = rustix::fs::openat(&self.fd, ".", DIR_FLAGS, Mode::empty())
            .map_err(io_err(self.shown("")))?;
        let mut walked = String::new();
        for seg in dirs.into_iter().flat_map(|d| d.split('/')) {
            if !walked.is_empty() {
                walked.push('/');
            }
            walked.push_str(seg);
            cur = match rustix::fs::openat(&cur, seg, DIR_FLAGS, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&cur, seg, Mode::from_raw_mode(0o777)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(io_err(self.shown(&walked))(e)),
                    }
                    rustix::fs::openat(&cur, seg, DIR_FLAGS, Mode::empty())
                        .map_err(|e| self.walk_error(&cur, seg, &walked, e))?
                }
                Err(Errno::NOENT) => return Ok(None),
                Err(e) => return Err(self.walk_error(&cur, seg, &walked, e)),
            };
        }
        Ok(Some((cur, name)))
    }

    /// Names why `seg` (at `walked`) could not be opened as a directory.
    fn walk_error(&self, dir: &OwnedFd, seg: &str, walked: &str, e: Errno) -> Error {
        let path = self.shown(walked);
        match rustix::fs::statat(dir, seg, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                Error::Symlink { path }
            }
            Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::Directory => {
                Error::NotADirectory { path }
            }
            _ => io_err(path)(e),
        }
    }

    /// What is at `rel`, without following symlinks. An unreachable parent (a file or a
    /// symlink where a directory should be) reports [`Entry::Other`].
    pub fn entry(&self, rel: &str) -> Result<Entry> {
        let (dir, name) = match self.parent(rel, false) {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(Entry::Missing),
            Err(Error::Symlink { .. } | Error::NotADirectory { .. }) => return Ok(Entry::Other),
            Err(e) => return Err(e),
        };
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile => Entry::File {
                    size: st.st_size as u64,
                    mtime_ns: st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128,
                },
                FileType::Directory => Entry::Dir,
                _ => Entry::Other,
            }),
            Err(Errno::NOENT) => Ok(Entry::Missing),
            Err(e) => Err(io_err(self.shown(rel))(e)),
        }
    }

    /// BLAKE3 of the regular file at `rel` (opened without following symlinks).
    pub fn hash(&self, rel: &str) -> Result<Digest> {
        let Some((dir, name)) = self.parent(rel, false)? else {
            return Err(io_err(self.shown(rel))(Errno::NOENT));
        };
        hash_at(&dir, name).map_err(|e| Error::Io {
            path: self.shown(rel),
            source: e,
        })
    }

    /// Places `blob` at `rel`: hard link (`copy == false`, falls back to a copy across
    /// filesystems unless `hard_only`) or copy to a temporary name in the same directory,
    /// then, if `expect` is given, checks that the placed bytes hash to it, then renames
    /// over `rel`. Returns `Ok(false)` (nothing placed) when the check fails: the blob is
    /// damaged. The blob missing is an I/O error of kind `NotFound`.
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
            .and_then(|()| match expect {
                Some(d) => hash_at(&dir, &tmp).map(|got| got == *d),
                None => Ok(true),
            });
        let ok = match placed {
            Ok(true) => rustix::fs::renameat(&dir, &tmp, &dir, name)
                .map(|()| true)
                .map_err(io::Error::from),
            other => other,
        };
        // Renaming a link onto another link of the same inode succeeds without removing
        // the source name, so remove it in every case.
        let _ = rustix::fs::unlinkat(&dir, &tmp, AtFlags::empty());
        ok.map_err(|source| Error::Io {
            path: shown,
            source,
        })
    }

    fn put_temp(&self, dir: &OwnedFd, tmp: &str, blob: &Path, mode: LinkMode) -> io::Result<()> {
        if mode != LinkMode::Copy {
            match rustix::fs::linkat(CWD, blob, dir, tmp, AtFlags::empty()) {
                Ok(()) => return Ok(()),
                Err(e) if mode == LinkMode::Hard || e != Errno::XDEV => return Err(e.into()),
                Err(_) => {} // another filesystem: copy
            }
        }
        let mut src = File::open(blob)?;
        let fd = rustix::fs::openat(
            dir,
            tmp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            // The kernel applies the umask: 0644 under umask 022, as `cp` does.
            Mode::from_raw_mode(0o666),
        )?;
        let mut dst = File::from(fd);
        // `io::copy` uses copy_file_range, which reflinks where the filesystem can.
        io::copy(&mut src, &mut dst)?;
        Ok(())
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

    /// Reads `.mvault/<file>`; `Ok(None)` if absent. A `.mvault` that is a symlink or not a
    /// directory is refused.
    pub fn read_record(&self, file: &str) -> Result<Option<Vec<u8>>> {
        let Some(dir) = self.records_dir(false)? else {
            return Ok(None);
        };
        let fd = match rustix::fs::openat(
            &dir,
            file,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(io_err(self.shown(&format!("{RESERVED_SEGMENT}/{file}")))(e)),
        };
        let shown = self.shown(&format!("{RESERVED_SEGMENT}/{file}"));
        let st = rustix::fs::fstat(&fd).map_err(io_err(shown.clone()))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
            || st.st_size > MAX_RECORD_BYTES
        {
            return Ok(None); // not a record mvault wrote
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
        Ok(Some(buf))
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

/// BLAKE3 of the regular file `name` in `dir`, opened without following symlinks.
fn hash_at(dir: &impl AsFd, name: &str) -> io::Result<Digest> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(io::Error::other("not a regular file"));
    }
    let mut h = blake3::Hasher::new();
    h.update_reader(File::from(fd))?;
    Ok(h.finalize().into())
}
