//! One profile's run as the lab left it, before it is judged: how the node ended, what was
//! injected, the view answers, and where its database is.

use std::path::{Path, PathBuf};

use super::drive::{Driven, NodeEnd};
use super::views::ViewAnswer;
use crate::config::node::NodeProfile;

/// One profile's run, before it is judged.
pub struct ProfileRun {
    pub profile: NodeProfile,
    pub driven: Driven,
    pub answers: Vec<ViewAnswer>,
    pub log_tail: Vec<String>,
    pub dir: PathBuf,
}

impl ProfileRun {
    /// How it ended, as seen from outside (the judge reads its database too).
    pub fn summary(&self, tip: u32) -> String {
        let injected = if self.driven.injected.is_empty() { String::new() } else { format!(", {} crashes injected", self.driven.injected.len()) };
        let height = self.driven.last_height.map_or("no height yet".into(), |h| format!("height {h}"));
        let wall = self.driven.wall.as_secs_f64();
        match &self.driven.end {
            NodeEnd::Finished { code, stopped_at_tip: true, .. } => format!("stopped at the tip {tip} (exit {code}) after {wall:.1} s{injected}"),
            NodeEnd::Finished { code, .. } => format!("exited with code {code} after {wall:.1} s{injected} (last answer: {height}; tip {tip})"),
            NodeEnd::Stalled { secs, .. } => format!("stalled at {height}: no progress for {secs} s{injected}"),
            NodeEnd::TimedOut { secs, .. } => format!("still indexing at {height} after {secs} s{injected}"),
        }
    }
}

/// The database a profile's node left (its directory inside the data mount).
pub fn database(dir: &Path) -> PathBuf {
    dir.join("data/db")
}

