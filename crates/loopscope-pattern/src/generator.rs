//! Word-parallel pattern generation.

use crate::spec::PatternSpec;

/// Emits a pattern as bytes, continuing where the last call stopped.
pub struct Generator {
    spec: PatternSpec,
}

impl Generator {
    pub fn new(spec: &PatternSpec) -> Self {
        Generator { spec: spec.clone() }
    }

    pub fn spec(&self) -> &PatternSpec {
        &self.spec
    }

    /// Fills `buf` with the next `buf.len()` bytes of the pattern.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let _ = buf;
        todo!("word-parallel generator")
    }
}
