//! Address notations, IANA special-purpose registries, loopback/martian/SSRF verdicts, and an SSRF-safe destination guard (pure).
