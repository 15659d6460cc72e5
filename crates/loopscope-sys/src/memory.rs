//! Handing freed heap memory back to the kernel (glibc's `mallopt` and `malloc_trim`).
//!
//! A server with a thread per client (the stream reflector) leaves memory behind when its
//! clients leave: glibc gives each thread an arena of its own (up to eight per core), and a
//! non-main arena's free top is never returned to the kernel, not even by `malloc_trim`. One
//! arena for the whole process, trimmed when the server goes idle, brings its RSS back to where
//! it started. Other C libraries have neither call; there these are no-ops.

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

#[cfg(test)]
mod tests {
    use super::*;

    fn anonymous_kib() -> u64 {
        let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap();
        rollup
            .lines()
            .find_map(|line| line.strip_prefix("Anonymous:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Many small blocks freed below one still in use: free(3) cannot shrink the heap past the
    /// live block, so the freed pages stay resident until the trim discards them. The figures
    /// come from the kernel (/proc/self/smaps_rollup), not from the allocator.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_memory_goes_back_to_the_kernel() {
        // Below the mmap threshold, so they come from the heap.
        let blocks: Vec<Vec<u8>> = (0..4096)
            .map(|i| vec![1 + (i % 255) as u8; 16 * 1024])
            .collect();
        let pin = vec![7u8; 1024];
        drop(blocks);
        let freed = anonymous_kib();
        assert!(release_free_memory(), "nothing was released");
        let trimmed = anonymous_kib();
        assert!(
            freed.saturating_sub(trimmed) >= 48 * 1024,
            "64 MiB freed, the trim gave back only {} KiB ({freed} -> {trimmed})",
            freed.saturating_sub(trimmed)
        );
        assert_eq!(pin[1023], 7);
    }
}
