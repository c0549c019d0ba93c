//! The workspace a command works in: its root (the current directory of every command), a shell
//! there, its configuration, and the global flags.

use std::path::{Path, PathBuf};

use anyhow::Result;
use cargo_metadata::Metadata;
use xshell::Shell;

use crate::artifacts::workspace_metadata;
use crate::backend::image::ImageBuild;
use crate::backend::BackendChoice;
use crate::config::ReproConfig;

pub struct Workspace {
    pub sh: Shell,
    pub root: PathBuf,
    metadata: Metadata,
    /// `--backend`.
    pub backend: BackendChoice,
    /// `--image-build`, or this host's default.
    pub image_build: ImageBuild,
}

impl Workspace {
    /// The workspace cargo finds from here, with a shell in its root.
    pub fn open(backend: BackendChoice, image_build: Option<ImageBuild>) -> Result<Self> {
        let image_build = image_build.unwrap_or_else(ImageBuild::default_for_this_host);
        let sh = Shell::new()?;
        let metadata = workspace_metadata()?;
        let root = metadata.workspace_root.clone().into_std_path_buf();
        sh.change_dir(&root);
        Ok(Self { sh, root, metadata, backend, image_build })
    }

    /// `[workspace.metadata.repro]`, read and checked.
    pub fn config(&self) -> Result<ReproConfig> {
        ReproConfig::from_workspace_metadata(&self.metadata.workspace_metadata)
    }

    /// `out_dir`, or `default` under the root (`target/repro`).
    pub fn out_dir(&self, out_dir: Option<PathBuf>, default: &str) -> PathBuf {
        out_dir.unwrap_or_else(|| self.root.join(default))
    }

    /// The workspace's members: each package's name and folder.
    pub fn members(&self) -> Vec<(String, &Path)> {
        let members = &self.metadata.workspace_members;
        self.metadata
            .packages
            .iter()
            .filter(|p| members.contains(&p.id))
            .filter_map(|p| Some((p.name.to_string(), p.manifest_path.parent()?.as_std_path())))
            .collect()
    }
}
