//! What a command is doing, on stderr: numbered phases, with a spinner for the quiet ones.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::Result;

/// Prints one phase's start and end on stderr. Builds show cargo's own progress.
pub fn phase<T>(number: usize, total: usize, what: &str, work: impl FnOnce() -> Result<T>) -> Result<T> {
    eprintln!("==> [{number}/{total}] {what}");
    let started = Instant::now();
    let value = work()?;
    eprintln!("    done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(value)
}

/// A phase that prints nothing of its own while it works (a run): on a terminal a spinner with
/// the elapsed time, elsewhere (CI logs) the same plain lines as [`phase`].
pub fn quiet_phase<T>(number: usize, total: usize, what: &str, work: impl FnOnce() -> Result<T>) -> Result<T> {
    if !std::io::stderr().is_terminal() {
        return phase(number, total, what, work);
    }
    let spinner = indicatif::ProgressBar::new_spinner().with_message(format!("[{number}/{total}] {what}"));
    spinner.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("valid template"));
    spinner.enable_steady_tick(Duration::from_millis(100));
    let started = Instant::now();
    let value = work();
    spinner.finish_and_clear();
    eprintln!("==> [{number}/{total}] {what}\n    done in {:.1} s", started.elapsed().as_secs_f64());
    value
}
