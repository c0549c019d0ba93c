//! How `cargo xtask` exits: one meaning per code, the same for every command (and 130 when
//! interrupted: `interrupt.rs`).

use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Identical (`repro`, `compare`, `k8s collect`, `diff`), or every check passed and every
    /// goal was met (`doctor`, `bench`, `bisect`, `tidy`).
    Success = 0,
    /// A difference was found, or a goal missed, a check failed.
    Different = 1,
    /// The harness itself failed, or a run cannot be trusted.
    HarnessError = 2,
    /// Nothing was compared (fewer than two runs, only host events, different blocks).
    NotCompared = 3,
}

impl Exit {
    /// `Success` when `ok`, else `Different`.
    pub fn passed(ok: bool) -> Self {
        if ok {
            Self::Success
        } else {
            Self::Different
        }
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    /// The exit a process of ours ended with (a child `cargo xtask`), if `code` is one.
    pub fn from_code(code: i32) -> Option<Self> {
        [Self::Success, Self::Different, Self::HarnessError, Self::NotCompared].into_iter().find(|exit| i32::from(exit.code()) == code)
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}
