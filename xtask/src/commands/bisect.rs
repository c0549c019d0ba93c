//! `cargo xtask bisect`: binary search over the container memory limit for the smallest limit
//! whose outcome (outcome class and committed state root) equals the outcome at the upper bound.
//! Probes that contradict each other (non-monotonic behaviour) are reported instead of a
//! threshold.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use xshell::Shell;

use crate::backend::image::ImageBuild;
use crate::backend::BackendChoice;
use crate::config::{ByteSize, Profile, ReproConfig};
use crate::exit::Exit;
use crate::flags::{self, InputFlags};
use crate::harness::Harness;
use crate::harness::Input;
use crate::input::Blocks;
use crate::judge::outcome::Kind;
use crate::judge::profile::ProfileReport;
use crate::plot::{write_svg, Limit, Plot, Point};
use crate::run_dir::new_run_dir;
use crate::units::{in_mib, mib, MIB};
use crate::workspace::Workspace;

pub fn run(ws: &Workspace, flags: flags::Bisect) -> Result<Exit> {
    let args = BisectArgs {
        config: flags.run.apply(ws.config()?)?,
        input: flags.input,
        lower: flags.between[0],
        upper: flags.between[1],
        resolution: flags.resolution,
        image_build: ws.image_build,
        backend: ws.backend,
        out_dir: flags.run.out_dir,
    };
    let report = bisect(&ws.sh, &ws.root, args).context("bisect")?;
    Ok(Exit::passed(report.threshold.is_some()))
}

pub struct BisectArgs {
    pub config: ReproConfig,
    /// The guest and its blocks (default: the stress guest over the configured stress block).
    pub input: InputFlags,
    pub lower: ByteSize,
    pub upper: ByteSize,
    pub resolution: ByteSize,
    pub image_build: ImageBuild,
    pub backend: BackendChoice,
    pub out_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub limit: String,
    pub limit_bytes: u64,
    /// Same outcome class and state root as the upper bound.
    pub matches_upper: bool,
    pub run: ProfileReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct BisectReport {
    pub lower: String,
    pub upper: String,
    pub resolution_bytes: u64,
    pub policy: String,
    pub probes: Vec<Probe>,
    /// The smallest probed limit known to behave like the upper bound; the true threshold lies
    /// within one resolution below it. `None` when behaviour was not monotonic.
    pub threshold: Option<String>,
    pub threshold_bytes: Option<u64>,
    /// Pairs of probes that contradict a single threshold (a smaller limit matching while a
    /// larger one does not).
    pub contradictions: Vec<String>,
}

/// What must match the upper bound: the outcome class and the committed state.
fn behaviour(run: &ProfileReport) -> (&'static str, Option<&str>) {
    (run.outcome.label(), run.state_root.as_deref())
}

/// The next limit to probe strictly between `lo` and `hi`: the midpoint rounded up to a whole
/// MiB when that stays inside, else the exact midpoint; `None` when no byte lies between.
pub fn midpoint(lo: u64, hi: u64) -> Option<u64> {
    let exact = lo + (hi - lo) / 2;
    let rounded = exact.div_ceil(MIB) * MIB;
    [rounded, exact].into_iter().find(|&mid| lo < mid && mid < hi)
}

/// Every pair (a < b in limit) where a matches the upper bound and b does not.
pub fn contradictions(probes: &[Probe]) -> Vec<String> {
    let mut found = Vec::new();
    for a in probes.iter().filter(|p| p.matches_upper) {
        for b in probes.iter().filter(|p| !p.matches_upper && p.limit_bytes >= a.limit_bytes) {
            found.push(format!(
                "{} behaves like the upper bound ({}) but {} does not ({})",
                a.limit,
                a.run.summary(),
                b.limit,
                b.run.summary()
            ));
        }
    }
    found.sort();
    found.dedup();
    found
}

pub fn bisect(sh: &Shell, root: &Path, args: BisectArgs) -> Result<BisectReport> {
    let (lower, upper, resolution) = (args.lower.bytes(), args.upper.bytes(), args.resolution.bytes().max(MIB));
    if lower >= upper {
        bail!("--between {} {}: the lower bound must be below the upper bound", args.lower, args.upper);
    }
    let guest = args.input.guest();
    let blocks = Blocks::resolve(&guest, &args.input.source, &args.config)?;
    let harness = Harness::prepare(sh, root, &guest, args.image_build, args.backend, 2)?;
    harness.check_blocks(&blocks)?;
    let dir = new_run_dir(args.out_dir.clone().unwrap_or_else(|| root.join("target/repro")))?;
    let input = harness.write_input(&dir, &blocks)?;
    let mut prober = Prober { harness: &harness, input: &input, config: &args.config, probes: Vec::new(), upper: None };
    let threshold = search(&mut prober, lower, upper, resolution)?;
    let contradictions = contradictions(&prober.probes);
    let threshold = contradictions.is_empty().then_some(threshold);
    let report = BisectReport {
        lower: args.lower.to_string(),
        upper: args.upper.to_string(),
        resolution_bytes: resolution,
        policy: args.config.policy.name().into(),
        threshold: threshold.map(|t| ByteSize::from_bytes(t).to_string()),
        threshold_bytes: threshold,
        probes: prober.probes,
        contradictions,
    };
    write_results(&dir, &report)?;
    println!();
    println!("{}", conclusion(&report));
    println!("results: {} (bisect.json, bisect.svg)", dir.display());
    Ok(report)
}

/// Runs the probes, and says of each whether it behaves like the first one (the upper bound).
struct Prober<'a> {
    harness: &'a Harness<'a>,
    input: &'a Input,
    config: &'a ReproConfig,
    probes: Vec<Probe>,
    /// The upper bound's behaviour: its outcome class and state root.
    upper: Option<(&'static str, Option<String>)>,
}

impl Prober<'_> {
    /// One run under `limit_bytes`: whether it behaves like the upper bound.
    fn probe(&mut self, limit_bytes: u64) -> Result<bool> {
        let limit = ByteSize::from_bytes(limit_bytes);
        let profile = Profile { name: format!("probe-{}-{limit}", self.probes.len() + 1), ..Profile::with_limit(limit) };
        let run = self.harness.run_profile(self.input, &profile, self.config, false)?;
        if run.outcome.kind() == Kind::HarnessError {
            bail!("the probe at {limit} cannot be trusted: {}", run.reason());
        }
        let reference = self.upper.get_or_insert_with(|| {
            let (label, root) = behaviour(&run);
            (label, root.map(String::from))
        });
        let matches_upper = behaviour(&run) == (reference.0, reference.1.as_deref());
        eprintln!(
            "==> probe {:>2}: {:>6}  {:<60} {}",
            self.probes.len() + 1,
            limit.to_string(),
            run.summary(),
            if matches_upper { "= upper bound" } else { "differs" }
        );
        self.probes.push(Probe { limit: limit.to_string(), limit_bytes, matches_upper, run });
        Ok(matches_upper)
    }
}

/// The binary search between `lower` and `upper`, then the probes that confirm it: the smallest
/// limit found to behave like the upper bound.
fn search(prober: &mut Prober, lower: u64, upper: u64, resolution: u64) -> Result<u64> {
    prober.probe(upper)?;
    if prober.probe(lower)? {
        return Ok(lower);
    }
    let (mut lo, mut hi) = (lower, upper);
    while hi - lo > resolution {
        let Some(mid) = midpoint(lo, hi) else { break };
        if prober.probe(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    // Confirm: repeat both sides of the threshold and probe halfway to the upper bound. A
    // single threshold predicts all three; any surprise means the behaviour is not monotonic.
    prober.probe(hi)?;
    prober.probe(lo)?;
    let above = (hi + (upper - hi) / 2).div_ceil(MIB) * MIB;
    if above > hi && above < upper {
        prober.probe(above)?;
    }
    Ok(hi)
}

/// `bisect.json` and `bisect.svg`.
fn write_results(dir: &Path, report: &BisectReport) -> Result<()> {
    std::fs::write(dir.join("bisect.json"), serde_json::to_string_pretty(report)?)?;
    let points: Vec<Point> = report
        .probes
        .iter()
        .map(|p| Point {
            x_mib: in_mib(p.limit_bytes),
            peak_mib: in_mib(p.run.peak_memory_bytes.unwrap_or(0)),
            good: p.matches_upper,
            label: format!("{} {}", p.limit, p.run.outcome.label()),
        })
        .collect();
    let title = format!("bisect {}..{} ({} policy)", report.lower, report.upper, report.policy);
    let plot = Plot { title: &title, x_label: "container memory limit (MiB)", limit: Limit::Diagonal, good: "behaves like the upper bound", bad: "differs", points: &points };
    write_svg(&dir.join("bisect.svg"), &plot)
}

pub fn conclusion(report: &BisectReport) -> String {
    match (&report.threshold, report.threshold_bytes) {
        (Some(threshold), Some(bytes)) => format!(
            "THRESHOLD: {threshold} ({}) is the smallest probed limit that behaves like {} ({}), to within {}",
            mib(bytes),
            report.upper,
            report.probes.first().map_or(String::new(), |p| p.run.summary()),
            mib(report.resolution_bytes)
        ),
        _ => format!(
            "NON-MONOTONIC: no single threshold explains the probes, so none is reported:\n  {}",
            report.contradictions.join("\n  ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::outcome::Outcome;
    use crate::judge::profile::tests::profile;

    fn probe(limit: &str, matches_upper: bool) -> Probe {
        let limit: ByteSize = limit.parse().unwrap();
        let outcome = if matches_upper { Outcome::Completed } else { Outcome::OomKilled { evidence: "e".into() } };
        Probe { limit: limit.to_string(), limit_bytes: limit.bytes(), matches_upper, run: profile("p", outcome, "r") }
    }

    /// Whatever the bounds and resolution, the search narrows the interval at every step and
    /// stops: every midpoint lies strictly inside.
    #[test]
    fn bisection_terminates_for_any_bounds_and_resolution() {
        let mut seed: u64 = 0x9e3779b97f4a7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let edges = [(600 << 10, 1700 << 10, MIB), (100 * MIB + 1, 101 * MIB + 2, MIB), (0, 3, MIB), (6 * MIB, 6 * MIB + 1, MIB)];
        let random: Vec<(u64, u64, u64)> = (0..2000)
            .map(|_| {
                let lo = next() % (8 << 30);
                (lo, lo + 1 + next() % (4 << 30), MIB * (1 + next() % 64))
            })
            .collect();
        for (lower, upper, resolution) in edges.into_iter().chain(random) {
            let (mut lo, mut hi) = (lower, upper);
            let mut steps = 0;
            while hi - lo > resolution {
                let Some(mid) = midpoint(lo, hi) else { break };
                assert!(lo < mid && mid < hi, "{mid} not inside ({lo}, {hi})");
                // Either answer must keep the search going inside the bounds.
                if next() % 2 == 0 { hi = mid } else { lo = mid }
                steps += 1;
                assert!(steps <= 64, "no end for {lower}..{upper} at {resolution}");
            }
        }
    }

    #[test]
    fn consistent_probes_have_no_contradiction() {
        let probes = [probe("4g", true), probe("256m", false), probe("2g", true), probe("1g", false)];
        assert!(contradictions(&probes).is_empty());
    }

    #[test]
    fn a_smaller_matching_limit_under_a_larger_failing_one_is_reported() {
        let probes = [probe("4g", true), probe("256m", false), probe("2g", true), probe("1g", false), probe("2g", false)];
        let found = contradictions(&probes);
        assert_eq!(found, ["2g behaves like the upper bound (completed, stored SUCCESS:1000MB) but 2g does not (oom-killed, stored SUCCESS:1000MB)"]);
    }
}
