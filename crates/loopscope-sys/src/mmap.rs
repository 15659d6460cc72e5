//! Read-only file mappings (memmap2), for capture files read front to back without a copy.

use std::fs::File;
use std::io;

/// A whole file mapped read-only into memory.
#[derive(Debug)]
pub struct MappedFile {
    map: memmap2::Mmap,
}

impl MappedFile {
    /// Maps `file` read-only and tells the kernel it will be read sequentially.
    pub fn map(file: &File) -> io::Result<Self> {
        // SAFETY: the map is read-only and private to this process, so nothing here writes
        // through it. Another process truncating the file while it is read would fault
        // (SIGBUS) and one writing it would change the bytes under us; that is the accepted
        // trade of every mmap reader (tcpdump's included) for not copying the file.
        let map = unsafe { memmap2::Mmap::map(file) }?;
        // Only a hint: readahead works without it.
        let _ = map.advise(memmap2::Advice::Sequential);
        Ok(MappedFile { map })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn the_map_holds_the_file_bytes() {
        let mut file = tempfile::tempfile().expect("temp file");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
        file.write_all(&data).expect("write");
        let map = MappedFile::map(&file).expect("map");
        assert_eq!(map.bytes(), &data[..]);
        let empty = tempfile::tempfile().expect("temp file");
        assert!(
            MappedFile::map(&empty)
                .expect("an empty file maps")
                .bytes()
                .is_empty()
        );
    }
}
