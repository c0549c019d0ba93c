//! Sizes as the tables and plots show them.

/// Docker refuses memory limits below 6 MiB.
pub const MIN_DOCKER_LIMIT: u64 = 6 << 20;

/// One mebibyte.
pub const MIB: u64 = 1 << 20;

/// `1536 MiB`.
pub fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / MIB as f64)
}

/// Bytes in MiB, for plotting.
pub fn in_mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}
