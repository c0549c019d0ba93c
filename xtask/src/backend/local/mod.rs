//! The local backend, for machines without a Docker engine: host-runner runs as a child process
//! under a real memory limit, enforced by the first of these mechanisms that works here. Each is
//! probed for real, never assumed; `MEMREPRO_LOCAL_LIMIT` names one to force it.
//!
//! 1. `cgroup`: a memory cgroup this tool creates and removes (v1 memory controller or v2). Needs
//!    write access to the cgroup tree, i.e. root.
//! 2. `systemd-user`: a transient scope of the user's own systemd manager (`systemd-run --user
//!    --scope`), the standard rootless way on cgroup v2. Needs a user manager (a login session or
//!    lingering) with the memory controller delegated to it.
//! 3. `systemd-sudo`: a transient scope of the system manager, created through passwordless sudo
//!    and running the runner as the caller (`sudo -n -P systemd-run --scope --uid --gid`). For
//!    machines with sudo but no user manager, such as a GitHub Actions job.
//! 4. `address-space`: RLIMIT_AS on the runner itself.
//!
//! How that differs from a container: no network, filesystem or user isolation; with a cgroup of
//! either kind the memory accounting is the same as Docker's; RLIMIT_AS limits address space, not
//! memory, so wasmtime's 4 GiB reservations fail at instantiation long before memory runs out.

mod limit;
mod mechanism;
mod probe;
mod run;

pub use limit::LocalLimit;
pub use mechanism::{forced, FORCE_VARIABLE};
pub use run::{run_local, Spawned};
