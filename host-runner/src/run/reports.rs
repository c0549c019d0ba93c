//! Where a run's block reports go: held for the result JSON, or appended to a file a line at a
//! time so a long run's memory does not grow with its length; added up either way.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use schema::{BlockReport, BlockTotals, ReportsFile};

pub struct Reports {
    pub totals: BlockTotals,
    held: Vec<BlockReport>,
    /// Written a whole line at a time, unbuffered: a killed run loses no report it made.
    file: Option<(File, ReportsFile)>,
}

impl Reports {
    /// Held, or appended to `file` (a resumed run adds to what the interrupted one wrote).
    pub fn new(file: Option<&Path>) -> Result<Self> {
        let file = file
            .map(|path| -> Result<_> {
                let opened = OpenOptions::new().create(true).append(true).open(path).with_context(|| format!("opening {}", path.display()))?;
                Ok((opened, ReportsFile { path: path.display().to_string(), lines: 0 }))
            })
            .transpose()?;
        Ok(Self { totals: BlockTotals::default(), held: Vec::new(), file })
    }

    pub fn push(&mut self, report: BlockReport) -> Result<()> {
        self.totals.add(&report);
        match &mut self.file {
            Some((out, file)) => {
                let mut line = serde_json::to_vec(&report)?;
                line.push(b'\n');
                out.write_all(&line).with_context(|| format!("writing {}", file.path))?;
                file.lines += 1;
            }
            None => self.held.push(report),
        }
        Ok(())
    }

    /// The reports held, or the file they went to.
    pub fn finish(self) -> (Vec<BlockReport>, Option<ReportsFile>, BlockTotals) {
        (self.held, self.file.map(|(_, file)| file), self.totals)
    }
}
