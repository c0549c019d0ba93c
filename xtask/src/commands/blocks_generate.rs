//! `cargo xtask blocks generate`: a chain for scale, written atomically as one block file
//! ([`blocks::generate`]).

use std::io::Write;

use anyhow::{ensure, Context, Result};

use crate::exit::Exit;
use crate::flags;

pub fn run(flags: flags::Generate) -> Result<Exit> {
    ensure!(flags.count > 0, "--count must be at least 1");
    let recipe = blocks::generate::Recipe { blocks: flags.count, seed: flags.seed, max_transactions: flags.max_transactions };
    let dir = flags.out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut file = tempfile::NamedTempFile::new_in(dir).context("a temporary file beside --out")?;
    let mut out = std::io::BufWriter::new(file.as_file_mut());
    blocks::generate::write_chain(recipe, &mut out)?;
    out.flush()?;
    drop(out);
    // A block file anyone may read (a container's user among them), as `cp` would leave it.
    std::fs::set_permissions(file.path(), std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    file.persist(&flags.out).with_context(|| format!("writing {}", flags.out.display()))?;
    let bytes = std::fs::metadata(&flags.out)?.len();
    println!("{} regtest blocks (seed {}, up to {} transactions each) written to {} ({bytes} bytes)", flags.count, flags.seed, flags.max_transactions, flags.out.display());
    Ok(Exit::Success)
}
