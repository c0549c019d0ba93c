//! What a command is doing, on stderr: numbered phases, with a spinner for the quiet ones, and
//! a run's own progress lines (height, blocks/s, ETA) followed from its log.

use std::io::{IsTerminal, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;

/// Prints one phase's start and end on stderr. Builds show cargo's own progress.
pub fn phase<T>(number: usize, total: usize, what: &str, work: impl FnOnce() -> Result<T>) -> Result<T> {
    eprintln!("==> [{number}/{total}] {what}");
    let started = Instant::now();
    let value = work()?;
    // A Ctrl-C during a step that cannot be stopped half-way (a build) ends the command after it.
    crate::interrupt::check()?;
    eprintln!("    done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(value)
}

/// A phase that prints nothing of its own while it works (a run): on a terminal a spinner with
/// the elapsed time, elsewhere (CI logs) the same plain lines as [`phase`].
pub fn quiet_phase<T>(number: usize, total: usize, what: &str, work: impl FnOnce() -> Result<T>) -> Result<T> {
    following(number, total, what, None, work)
}

/// A quiet phase whose run writes `progress:` lines to `log`: the latest shown beside the
/// spinner on a terminal, elsewhere printed as plain lines, one every 30 s at most.
pub fn following<T>(number: usize, total: usize, what: &str, log: Option<&Path>, work: impl FnOnce() -> Result<T>) -> Result<T> {
    let terminal = std::io::stderr().is_terminal();
    if !terminal {
        eprintln!("==> [{number}/{total}] {what}");
    }
    let spinner = terminal.then(|| {
        let spinner = indicatif::ProgressBar::new_spinner().with_message(format!("[{number}/{total}] {what}"));
        spinner.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("valid template"));
        spinner.enable_steady_tick(Duration::from_millis(100));
        spinner
    });
    let started = Instant::now();
    let done = AtomicBool::new(false);
    let value = std::thread::scope(|scope| {
        if let Some(log) = log {
            let (done, spinner) = (&done, spinner.clone());
            let show = move |line: &str| match &spinner {
                Some(spinner) => spinner.set_message(format!("[{number}/{total}] {what}: {line}")),
                None => eprintln!("    {line}"),
            };
            scope.spawn(move || follow(log, done, if terminal { Duration::ZERO } else { Duration::from_secs(30) }, show));
        }
        let value = work();
        done.store(true, Ordering::Relaxed);
        value
    });
    match spinner {
        Some(spinner) => {
            spinner.finish_and_clear();
            eprintln!("==> [{number}/{total}] {what}\n    done in {:.1} s", started.elapsed().as_secs_f64());
        }
        None if value.is_ok() => eprintln!("    done in {:.1} s", started.elapsed().as_secs_f64()),
        None => {}
    }
    value
}

/// Shows each new `progress:` line of `log` (at most one per `every`) until `done`.
fn follow(log: &Path, done: &AtomicBool, every: Duration, show: impl Fn(&str)) {
    let (mut shown, mut at) = (String::new(), None::<Instant>);
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(500));
        let Some(line) = last_progress(log) else { continue };
        if line != shown && at.is_none_or(|at| at.elapsed() >= every) {
            show(&line);
            (shown, at) = (line, Some(Instant::now()));
        }
    }
}

/// The last `progress:` line in the last 4 KiB of `log`.
pub fn last_progress(log: &Path) -> Option<String> {
    let mut file = std::fs::File::open(log).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).ok()?;
    String::from_utf8_lossy(&tail).lines().rev().find(|l| l.starts_with("progress: ")).map(str::to_string)
}
