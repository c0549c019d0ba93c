//! Progress lines on stderr while a run indexes: height, blocks done of those asked, the rate
//! and the time left, every few seconds. The xtask reads the last one from the run's log.

use std::time::{Duration, Instant};

/// How often a line is printed.
const EVERY: Duration = Duration::from_secs(5);

pub struct Progress {
    started: Instant,
    printed: Instant,
    /// Blocks this run is to index, and those done so far.
    total: u64,
    done: u64,
}

impl Progress {
    pub fn new(total: u64) -> Self {
        let now = Instant::now();
        Self { started: now, printed: now, total, done: 0 }
    }

    /// Block `height` is done; a line when the last was printed long enough ago.
    pub fn done(&mut self, height: u32) {
        self.done += 1;
        if self.printed.elapsed() >= EVERY {
            self.printed = Instant::now();
            eprintln!("{}", self.line(height));
        }
    }

    /// `progress: height 1234, 1000 of 50000 blocks, 812.3 blocks/s, ETA 60s`.
    fn line(&self, height: u32) -> String {
        let rate = self.done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let left = self.total.saturating_sub(self.done) as f64 / rate.max(1e-9);
        format!("progress: height {height}, {} of {} blocks, {rate:.1} blocks/s, ETA {left:.0}s", self.done, self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_where_the_run_is_and_how_long_is_left() {
        let mut progress = Progress::new(300);
        progress.started -= Duration::from_secs(10);
        progress.done = 100;
        assert_eq!(progress.line(99), "progress: height 99, 100 of 300 blocks, 10.0 blocks/s, ETA 20s");
    }
}
