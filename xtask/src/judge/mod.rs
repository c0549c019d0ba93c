//! Judging runs: each run's outcome from its own evidence ([`outcome`]), the run as a report
//! shows it ([`profile`]), two runs compared ([`comparison`], over [`dump_diff`]'s streaming diff
//! of their dumps), the verdict over them ([`verdict`]) and its renderings ([`report`]). Lower
//! modules know nothing of higher ones: outcome, dump_diff < profile < comparison < verdict <
//! report.

pub mod comparison;
pub mod dump_diff;
pub mod node_diff;
pub mod outcome;
pub mod profile;
pub mod report;
pub mod verdict;
