//! SVG plots of sweeps and bisections (plotters): peak memory against the swept quantity, each
//! point colored by its outcome, with the container limit drawn where it applies.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

/// One measured point.
pub struct Point {
    pub x_mib: f64,
    pub peak_mib: f64,
    /// Green when the run did what the reference did (completed / matched the upper bound).
    pub good: bool,
    pub label: String,
}

pub struct Plot<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    /// A horizontal line at the container limit (sweep), or the diagonal y = x (bisect).
    pub limit: Limit,
    /// Legend of the green and the red points.
    pub good: &'a str,
    pub bad: &'a str,
    pub points: &'a [Point],
}

pub enum Limit {
    At(f64),
    Diagonal,
}

pub fn write_svg(path: &Path, plot: &Plot) -> Result<()> {
    let max_x = plot.points.iter().map(|p| p.x_mib).fold(1.0, f64::max) * 1.1;
    let limit_y = match plot.limit {
        Limit::At(y) => y,
        Limit::Diagonal => max_x,
    };
    let max_y = plot.points.iter().map(|p| p.peak_mib).fold(limit_y, f64::max) * 1.1;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error + '_>> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(plot.title, ("sans-serif", 20))
            .margin(20)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..max_x, 0.0..max_y)?;
        chart.configure_mesh().x_desc(plot.x_label).y_desc("peak memory (MiB)").draw()?;
        let limit_line = match plot.limit {
            Limit::At(y) => vec![(0.0, y), (max_x, y)],
            Limit::Diagonal => vec![(0.0, 0.0), (max_x, max_x)],
        };
        chart
            .draw_series(LineSeries::new(limit_line, BLUE.stroke_width(1)))?
            .label("container limit")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        for (good, name, color) in [(true, plot.good, GREEN), (false, plot.bad, RED)] {
            let points: Vec<_> = plot.points.iter().filter(|p| p.good == good).collect();
            chart
                .draw_series(points.iter().map(|p| Circle::new((p.x_mib, p.peak_mib), 5, color.filled())))?
                .label(name)
                .legend(move |(x, y)| Circle::new((x + 10, y), 5, color.filled()));
            chart.draw_series(points.iter().map(|p| {
                Text::new(p.label.clone(), (p.x_mib, p.peak_mib), ("sans-serif", 12).into_font().color(&BLACK))
            }))?;
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| anyhow!("drawing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg_with_the_points_and_labels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.svg");
        let points = [
            Point { x_mib: 100.0, peak_mib: 120.0, good: true, label: "10x10".into() },
            Point { x_mib: 200.0, peak_mib: 230.0, good: false, label: "oom-killed".into() },
        ];
        write_svg(&path, &Plot { title: "sweep", x_label: "total (MB)", limit: Limit::At(256.0), good: "succeeded", bad: "failed", points: &points }).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("oom-killed") && svg.contains("peak memory (MiB)"), "{svg}");
        assert_eq!(svg.matches("<circle").count(), 4, "two points and two legend marks");
    }
}
