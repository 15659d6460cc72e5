//! Handing freed heap memory back to the kernel (glibc's `mallopt` and `malloc_trim`).
//!
//! A server with a thread per client (the stream reflector) leaves memory behind when its
//! clients leave: glibc gives each thread an arena of its own (up to eight per core), and a
//! non-main arena's free top is never returned to the kernel, not even by `malloc_trim`. One
//! arena for the whole process, trimmed when the server goes idle, brings its RSS back to where
//! it started. Other C libraries have neither call; there these are no-ops.
//!
//! [`PageBuffer`] is memory of whole pages from the kernel whose pages can be handed back while
//! the buffer is kept: a datagram loop's batch buffers are touched as far as the largest
//! datagrams reached, and once the loop is idle those pages go back (`MADV_DONTNEED`).

use std::io;
use std::ptr::NonNull;

/// Makes every thread allocate from the one main arena (`M_ARENA_MAX` = 1). Call before the
/// threads start; a thread that already has an arena keeps it. Returns whether glibc took it.
pub fn use_one_malloc_arena() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets a tunable of the allocator; it takes plain integers, touches
        // no memory of ours and is safe to call from any thread at any time.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Returns the allocator's free memory to the kernel (`malloc_trim(0)`): the free top of the
/// main heap is given back and free pages inside every arena are discarded. Returns whether
/// any memory was released.
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes the allocator's own locks and only releases memory that is
        // free (owned by no live allocation); it takes a plain integer and is thread-safe.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Zeroed, page-aligned memory mapped straight from the kernel (`mmap`, anonymous and
/// private), as long as asked (rounded up to whole pages). Its pages become resident as they
/// are written, and [`PageBuffer::release`] gives them back without unmapping: the buffer reads
/// as zeros again and costs no memory until it is written again.
pub struct PageBuffer {
    start: NonNull<u8>,
    len: usize,
}

// SAFETY: the buffer owns its mapping exclusively (nothing else holds the address), like a
// Box<[u8]>; shared access only reads it and mutation needs `&mut`.
unsafe impl Send for PageBuffer {}
// SAFETY: as above: `&PageBuffer` gives only `&[u8]`.
unsafe impl Sync for PageBuffer {}

impl PageBuffer {
    /// Maps `len` bytes (at least one page) of zeroed memory.
    pub fn new(len: usize) -> io::Result<PageBuffer> {
        let len = len.max(1);
        // SAFETY: an anonymous private mapping at an address the kernel chooses: it overlaps
        // nothing of ours, and the arguments are plain integers. The result is checked.
        let start = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if start == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let start = NonNull::new(start.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap gave a null address"))?;
        let buffer = PageBuffer { start, len };
        // Pages of 4 KiB, never a transparent huge page: a datagram loop touches the start of
        // each of its 64 KiB buffers, and with THP on "always" one byte would make 2 MiB
        // resident. Best effort (a kernel without THP refuses it; nothing to avoid then).
        // SAFETY: advice on our own mapping only; it changes no contents.
        unsafe {
            libc::madvise(start.as_ptr().cast(), len, libc::MADV_NOHUGEPAGE);
        }
        Ok(buffer)
    }

    /// Hands every page back to the kernel (`MADV_DONTNEED`): resident memory drops by what was
    /// touched, and the buffer reads as zeros. Takes `&mut self`, so no slice of it is alive.
    pub fn release(&mut self) -> io::Result<()> {
        // SAFETY: the range is exactly our own private anonymous mapping, and `&mut self` means
        // no reference into it exists while its contents become zeros.
        let result =
            unsafe { libc::madvise(self.start.as_ptr().cast(), self.len, libc::MADV_DONTNEED) };
        if result == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

impl std::ops::Deref for PageBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `start` is a live mapping of `len` readable bytes, owned by `self`, zero-filled
        // by the kernel (so initialised); the borrow of `self` keeps it mapped.
        unsafe { std::slice::from_raw_parts(self.start.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for PageBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.start.as_ptr(), self.len) }
    }
}

impl Drop for PageBuffer {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; no reference to it can outlive
        // `self`.
        unsafe {
            libc::munmap(self.start.as_ptr().cast(), self.len);
        }
    }
}

impl std::fmt::Debug for PageBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PageBuffer({} bytes at {:p})", self.len, self.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The resident KiB of the mapping that holds `address`, as the kernel reports it.
    fn mapping_rss_kib(address: usize) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut in_mapping = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ')
                && let Some((start, end)) = range.split_once('-')
                && let (Ok(start), Ok(end)) = (
                    usize::from_str_radix(start, 16),
                    usize::from_str_radix(end, 16),
                )
            {
                in_mapping = (start..end).contains(&address);
            } else if in_mapping && let Some(rest) = line.strip_prefix("Rss:") {
                return rest.trim().trim_end_matches("kB").trim().parse().unwrap();
            }
        }
        panic!("no mapping at {address:#x}");
    }

    /// The kernel's own count of the mapping's resident pages: 2 MiB once written, nothing once
    /// released; the buffer stays usable and reads as zeros.
    #[test]
    fn released_pages_leave_the_resident_set_and_read_as_zeros() {
        let mut buffer = PageBuffer::new(2 << 20).unwrap();
        let address = buffer.as_ptr() as usize;
        assert_eq!(mapping_rss_kib(address), 0, "nothing touched yet");
        buffer.fill(0xA5);
        assert_eq!(mapping_rss_kib(address), 2048);
        buffer.release().unwrap();
        assert_eq!(mapping_rss_kib(address), 0);
        assert!(buffer.iter().all(|&byte| byte == 0));
        buffer[4096] = 1;
        assert_eq!(mapping_rss_kib(address), 4);
    }

    fn anonymous_kib() -> u64 {
        let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap();
        rollup
            .lines()
            .find_map(|line| line.strip_prefix("Anonymous:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Many small blocks freed below one still in use: free(3) cannot shrink the heap past the
    /// live block, so the freed pages normally stay resident until the trim discards them. The
    /// figures come from the kernel (/proc/self/smaps_rollup), not from the allocator, and are
    /// the whole process's: other tests of this binary run beside this one, so the bound is
    /// "back near where it was before the blocks", not an exact count. In one CI run beside
    /// stress-ng the freed pages had already left before the trim; the property (freed memory
    /// is not kept) held, and the trim is then asked only to run.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_memory_goes_back_to_the_kernel() {
        const BLOCKS_KIB: u64 = 64 * 1024;
        let before = anonymous_kib();
        // Below the mmap threshold, so they come from the heap.
        let blocks: Vec<Vec<u8>> = (0..4096)
            .map(|i| vec![1 + (i % 255) as u8; 16 * 1024])
            .collect();
        let pin = vec![7u8; 1024];
        let live = anonymous_kib();
        assert!(
            live.saturating_sub(before) >= BLOCKS_KIB * 3 / 4,
            "64 MiB written but only {} KiB resident ({before} -> {live})",
            live.saturating_sub(before)
        );
        drop(blocks);
        let freed = anonymous_kib();
        let released = release_free_memory();
        if freed.saturating_sub(before) >= BLOCKS_KIB * 3 / 4 {
            assert!(
                released,
                "64 MiB free and resident, and the trim released nothing"
            );
        }
        let trimmed = anonymous_kib();
        assert!(
            trimmed <= before + BLOCKS_KIB / 4,
            "64 MiB freed and trimmed, yet {} KiB more resident than before them \
             ({before} -> {live} live -> {freed} freed -> {trimmed} trimmed)",
            trimmed.saturating_sub(before)
        );
        assert_eq!(pin[1023], 7);
    }
}
