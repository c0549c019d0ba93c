//! Ctrl-C and SIGTERM. The handler only notes the signal; the xtask honours it at the next
//! place it waits (a run's wait loop, the node lab's polls, the end of a phase), which stops
//! what it started and returns [`Interrupted`] up through every cleanup on the way, so every
//! container, network and temporary directory is removed. `main` then exits 130. A second
//! signal ends the xtask at once (exit 130), leaving what the first would have removed
//! (`repro --resume` removes a leftover container).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGINT, SIGTERM};

/// The exit code of an interrupted command (128 + SIGINT, as a shell reports Ctrl-C).
pub const EXIT_CODE: u8 = 130;

/// Set by the first signal.
fn seen() -> &'static Arc<AtomicBool> {
    static SEEN: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    SEEN.get_or_init(Arc::default)
}

/// Which signal came first.
fn which() -> &'static Arc<AtomicUsize> {
    static WHICH: OnceLock<Arc<AtomicUsize>> = OnceLock::new();
    WHICH.get_or_init(Arc::default)
}

/// Installs the handlers (also over an inherited "ignore": a background job's Ctrl-C).
pub fn install() -> std::io::Result<()> {
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it runs before the flag is set: only a second signal ends at once.
        signal_hook::flag::register_conditional_shutdown(signal, i32::from(EXIT_CODE), Arc::clone(seen()))?;
        signal_hook::flag::register_usize(signal, Arc::clone(which()), signal as usize)?;
        signal_hook::flag::register(signal, Arc::clone(seen()))?;
    }
    Ok(())
}

/// The signal that interrupted this xtask, if one did.
pub fn received() -> Option<Interrupted> {
    seen().load(Ordering::SeqCst).then(|| Interrupted { signal: which().load(Ordering::SeqCst) as i32 })
}

/// `Err` once a signal came: where the xtask waits or goes on to its next step.
pub fn check() -> Result<(), Interrupted> {
    received().map_or(Ok(()), Err)
}

/// The error an interruption travels up as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted {
    pub signal: i32,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.signal {
            SIGINT => write!(f, "interrupted by SIGINT (Ctrl-C)"),
            SIGTERM => write!(f, "interrupted by SIGTERM"),
            other => write!(f, "interrupted by signal {other}"),
        }
    }
}

impl std::error::Error for Interrupted {}
