//! One figure of the bench: what was measured, against which goal, and the table of them all.

use serde::Serialize;
use serde_json::Value;

/// One line of the results table.
#[derive(Debug, Serialize)]
pub struct Figure {
    pub name: String,
    pub figure: String,
    pub goal: Option<String>,
    /// `None` when the figure has no goal.
    pub met: Option<bool>,
    pub details: Value,
}

pub(super) fn table(figures: &[Figure]) -> String {
    let verdict = |f: &Figure| match f.met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "-",
    };
    let width = |header: &str, cell: &dyn Fn(&Figure) -> String| {
        figures.iter().map(|f| cell(f).chars().count()).max().unwrap_or(0).max(header.len())
    };
    let name_width = width("benchmark", &|f| f.name.clone());
    let goal_width = width("goal", &|f| f.goal.clone().unwrap_or_default());
    let mut text = format!("{:name_width$}  {:goal_width$}  {:7}  figure\n", "benchmark", "goal", "verdict");
    for f in figures {
        text += &format!("{:name_width$}  {:goal_width$}  {:7}  {}\n", f.name, f.goal.as_deref().unwrap_or("-"), verdict(f), f.figure);
    }
    text
}

pub(super) fn goal(name: &str, figure: String, goal: &str, met: bool, details: Value) -> Figure {
    Figure { name: name.into(), figure, goal: Some(goal.into()), met: Some(met), details }
}

pub(super) fn info(name: &str, figure: String, details: Value) -> Figure {
    Figure { name: name.into(), figure, goal: None, met: None, details }
}

pub(super) fn section(what: &str) {
    eprintln!("==> bench: {what}");
}
