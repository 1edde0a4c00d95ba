//! Large byte buffers (stored chunk objects, plaintexts, byte planes, pack ranges) recycled
//! within the process instead of mapped and unmapped once per chunk.
//!
//! Buffers of 4 MiB and more get their own mappings from glibc (`main` sets the threshold so
//! that freed ones go back to the system), so each fresh one costs a page fault per 4 KiB
//! touched: measured on a pull of a 5 GiB bf16 file from a local vault, a third of its system
//! time, and on `verify` (read + decode of 3.3 GiB) most of it. A buffer given back here is
//! kept for the next [`take`] while the buffers kept total at most [`KEPT_BYTES`]; others are
//! freed. Smaller buffers are left to the allocator, which already reuses them.
//!
//! A push's encoded chunks keep their own pool (`transfer::cut`, one buffer per chunk worker):
//! encoding them into this one (8 MiB kept, so one of the two workers misses) measured a 5 GiB
//! bf16 `push --dry-run` at 4.7-4.9 s and 2.9-3.0 s of system time, against 3.7 s and 0.8 s.
//!
//! Invariant: at most [`KEPT_BYTES`] bytes of capacity wait in the pool, so the memory it
//! adds to what is in use is bounded whatever the model's size.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

/// Buffers of fewer bytes (4 MiB, glibc's mmap threshold as `main` sets it) are not kept.
pub const MIN_POOLED: usize = 4 * 1024 * 1024;
/// Most capacity, in bytes, kept for reuse: 8 MiB, one average tensor chunk. Measured on a
/// pull of a 5 GiB bf16 file from a local vault: none kept 7.6-11.8 s at 94-96 MiB peak RSS;
/// 16 MiB 4.8-9.4 s at 114-131 MiB; 8 MiB 5.8-8.1 s at 92-96 MiB.
pub const KEPT_BYTES: usize = 8 * 1024 * 1024;

/// Whether the pool's buffers are advised for huge pages ([`advise_huge_pages`]).
static HUGE_PAGES: AtomicBool = AtomicBool::new(false);

/// From now on, asks the kernel to back each buffer the pool makes or grows with transparent
/// huge pages (`madvise(MADV_HUGEPAGE)`; THP is `madvise`-only on most systems): a fresh
/// 4 KiB page costs a fault each, a 2 MiB page one fault per 512 of them. Measured on a
/// 5 GiB bf16 version in a local vault (`bench/README.md`, "2026-12-04, evening"): `verify`
/// 2.66-2.74 s without, 1.97-2.02 s with (most runs); a cold pull 5.1-6.3 s without,
/// 3.2-4.4 s with.
///
/// For a process that has made blocks of [`MIN_POOLED`] bytes their own mappings (the
/// binary's `main` does, with `M_MMAP_THRESHOLD`), so that the advice covers exactly those
/// buffers and goes away with them; a library user's allocator may put them inside a heap
/// instead, where the kernel could later fill freed neighbours with huge pages too, so it is
/// off by default. Only the pool's buffers: a push's long-lived buffers fault once anyway,
/// and advising every large block raised a push's peak RSS by 5 MiB, to 127 MiB. The advice
/// changes how pages are backed, never their contents; errors (no THP, pages larger than
/// 4 KiB) are ignored.
pub fn advise_huge_pages() {
    HUGE_PAGES.store(true, Ordering::Relaxed);
}

/// Advises the pages of `buf`'s allocation as [`advise_huge_pages`] says, if it asked.
fn advise_huge(buf: &Vec<u8>) {
    #[cfg(target_os = "linux")]
    if buf.capacity() >= MIN_POOLED && HUGE_PAGES.load(Ordering::Relaxed) {
        const PAGE: usize = 4096;
        let p = buf.as_ptr() as usize;
        let start = p & !(PAGE - 1);
        let end = (p + buf.capacity()).next_multiple_of(PAGE);
        // SAFETY: the range is the pages holding `buf`'s live allocation (and what else lies
        // on its first and last page, such as the allocator's header); MADV_HUGEPAGE changes
        // neither their contents nor their protection.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    }
}

/// A pool of free buffers, sorted by capacity (smallest first), with their total capacity.
pub struct Pool {
    free: Mutex<(Vec<Vec<u8>>, usize)>,
    /// Most capacity kept, in bytes.
    kept_max: usize,
}

/// The process's pool, used by the functions of this module.
static POOL: Pool = Pool::new(KEPT_BYTES);

/// An empty buffer with room for at least `capacity` bytes, from the process's pool.
pub fn take(capacity: usize) -> Vec<u8> {
    POOL.take(capacity)
}

/// Hands `buf` back to the process's pool.
pub fn give(buf: Vec<u8>) {
    POOL.give(buf)
}

/// `buf` as [`Bytes`] that hand it back to the process's pool when the last reference goes.
pub fn into_bytes(buf: Vec<u8>) -> Bytes {
    POOL.into_bytes(buf)
}

impl Pool {
    pub const fn new(kept_max: usize) -> Pool {
        Pool {
            free: Mutex::new((Vec::new(), 0)),
            kept_max,
        }
    }

    /// An empty buffer with room for at least `capacity` bytes: the smallest kept one that is
    /// large enough, else the largest kept one grown (glibc moves a mapping's pages with
    /// `mremap`: only the added ones fault), else a new one.
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        if capacity >= MIN_POOLED {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            let (bufs, kept) = &mut *free;
            let at = bufs.partition_point(|b| b.capacity() < capacity);
            if !bufs.is_empty() {
                let mut buf = bufs.remove(at.min(bufs.len() - 1));
                *kept -= buf.capacity();
                drop(free);
                buf.clear();
                let old = buf.capacity();
                buf.reserve_exact(capacity);
                if buf.capacity() != old {
                    advise_huge(&buf);
                }
                return buf;
            }
        }
        let buf = Vec::with_capacity(capacity);
        advise_huge(&buf);
        buf
    }

    /// Hands `buf` back: kept for a later [`Pool::take`] if it is large; the smallest kept
    /// ones are freed while more than the bound is kept (larger buffers serve more takes).
    pub fn give(&self, buf: Vec<u8>) {
        let cap = buf.capacity();
        if !(MIN_POOLED..=self.kept_max).contains(&cap) {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let (bufs, kept) = &mut *free;
        let at = bufs.partition_point(|b| b.capacity() < cap);
        bufs.insert(at, buf);
        *kept += cap;
        let mut freed = Vec::new();
        while *kept > self.kept_max {
            let small = bufs.remove(0);
            *kept -= small.capacity();
            freed.push(small);
        }
        drop(free);
        drop(freed);
    }

    /// `buf` as [`Bytes`] that hand it back ([`Pool::give`]) when the last reference is
    /// dropped.
    pub fn into_bytes(&'static self, buf: Vec<u8>) -> Bytes {
        if buf.capacity() < MIN_POOLED {
            return Bytes::from(buf);
        }
        Bytes::from_owner(Lent(buf, self))
    }
}

/// A buffer lent out as [`Bytes`], and the pool it returns to.
struct Lent(Vec<u8>, &'static Pool);

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        self.1.give(std::mem::take(&mut self.0));
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn buffers_are_reused_within_the_bound() {
        static P: Pool = Pool::new(3 * MIN_POOLED);
        let big = MIN_POOLED * 2;
        let mut a = P.take(big);
        a.extend_from_slice(&vec![7u8; big]);
        let ptr = a.as_ptr();
        let bytes = P.into_bytes(a);
        assert_eq!(bytes.len(), big);
        drop(bytes.slice(1..2));
        drop(bytes);
        // The smallest kept buffer that fits, cleared.
        let b = P.take(MIN_POOLED + 1);
        assert_eq!((b.as_ptr(), b.len()), (ptr, 0));
        assert!(b.capacity() >= big);
        // None fits: the largest, grown.
        P.give(b);
        let b = P.take(big + 1);
        assert!(b.capacity() > big && P.free.lock().unwrap().0.is_empty());
        // Small buffers are not kept; beyond the bound (12 MiB) the smallest go first: of
        // 4, 4, 8 and 8 MiB given, one 8 MiB buffer stays.
        P.give(Vec::with_capacity(MIN_POOLED - 1));
        let more = [P.take(MIN_POOLED), P.take(MIN_POOLED), P.take(big)];
        more.into_iter().for_each(|b| P.give(b));
        P.give(b);
        let free = P.free.lock().unwrap();
        let caps = Vec::from_iter(free.0.iter().map(Vec::capacity));
        assert_eq!(
            (caps.len(), free.1),
            (1, caps.iter().sum::<usize>()),
            "{caps:?}"
        );
        assert!(caps[0] >= big);
        assert!(free.1 <= 3 * MIN_POOLED, "{caps:?}");
    }

    /// The `VmFlags` of the mapping of /proc/self/smaps that holds address `p`.
    #[cfg(target_os = "linux")]
    fn vm_flags(p: usize) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            let range = line
                .split_whitespace()
                .next()
                .and_then(|r| r.split_once('-'));
            let parse = |h: &str| usize::from_str_radix(h, 16).ok();
            if let Some((Some(a), Some(b))) = range.map(|(a, b)| (parse(a), parse(b))) {
                inside = (a..b).contains(&p);
            } else if let Some(flags) = line.strip_prefix("VmFlags:").filter(|_| inside) {
                return flags.trim().to_string();
            }
        }
        panic!("no mapping holds {p:#x}")
    }

    /// The pool's buffers, new or grown, lie in mappings advised for huge pages (`hg` in
    /// smaps) wherever the kernel has THP.
    #[cfg(target_os = "linux")]
    #[test]
    fn pooled_buffers_are_advised_for_huge_pages() {
        if !Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists() {
            eprintln!("this kernel has no transparent huge pages; nothing to check");
            return;
        }
        static P: Pool = Pool::new(4 * MIN_POOLED);
        advise_huge_pages();
        let assert_hg = |b: &Vec<u8>| {
            let flags = vm_flags(b.as_ptr() as usize);
            assert!(flags.split(' ').any(|f| f == "hg"), "{flags}");
        };
        let a = P.take(2 * MIN_POOLED);
        assert_hg(&a);
        P.give(a);
        let grown = P.take(3 * MIN_POOLED);
        assert_hg(&grown);
    }
}
