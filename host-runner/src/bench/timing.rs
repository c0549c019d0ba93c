//! What every figure shares: the time a measured run may take, and the median of runs.

use std::time::Duration;

/// The wall-clock limit of a measured block: far above any, so it never decides a figure.
pub const TIME_LIMIT: Duration = Duration::from_secs(600);

/// The median of `values` (the upper one of an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}
