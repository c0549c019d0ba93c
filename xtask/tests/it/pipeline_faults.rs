//! Faults of the pipeline itself, each injected into a real run: Ctrl-C and SIGTERM, a run that
//! stops making progress, a disk that fills, two runs at once. None may become a verdict.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use crate::support::*;

const BLOCKS: u32 = 1500;

/// `repro` of the chain guest over `chain` under 256m and 1g, plus `extra`.
fn chain_repro(chain: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["repro", "--guest", "chain", "--blocks", chain.to_str().unwrap(), "--limit", "256m", "--limit", "1g"].map(String::from).to_vec();
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// The xtask started in a process group of its own (as a shell starts a foreground job), its
/// output to files in `logs`.
fn start(args: &[String], out: &Path, logs: &Path) -> Child {
    std::fs::create_dir_all(logs).unwrap();
    xtask_command()
        .args(args)
        .arg("--out-dir")
        .arg(out)
        .process_group(0)
        .stdout(std::fs::File::create(logs.join("stdout")).unwrap())
        .stderr(std::fs::File::create(logs.join("stderr")).unwrap())
        .spawn()
        .unwrap()
}

/// Waits until profile `profile` of the only run under `out` has reported `reported` blocks.
fn wait_for_blocks(child: &mut Child, out: &Path, profile: &str, reported: usize) -> PathBuf {
    let started = Instant::now();
    loop {
        let run = std::fs::read_dir(out).ok().and_then(|mut runs| runs.next()).map(|run| run.unwrap().path());
        let count = run.as_ref().map_or(0, |run| std::fs::read_to_string(run.join(profile).join("blocks.jsonl")).map_or(0, |t| t.lines().count()));
        if count >= reported {
            return run.unwrap();
        }
        assert!(child.try_wait().unwrap().is_none(), "the xtask ended before `{profile}` reported {reported} blocks");
        assert!(started.elapsed() < Duration::from_secs(600), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for the xtask to end, at most `within`; its output.
fn ended(mut child: Child, logs: &Path, within: Duration) -> Output {
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < within, "the xtask did not end within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |name: &str| std::fs::read(logs.join(name)).unwrap();
    Output { status, stdout: read("stdout"), stderr: read("stderr") }
}

/// An xtask must stop within this of a signal.
const STOPS_WITHIN: Duration = Duration::from_secs(60);
/// A run of the chain's 1,500 blocks under both limits ends within this.
const RUNS_WITHIN: Duration = Duration::from_secs(600);

fn signal(target: i32, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), "--", &target.to_string()]).status().unwrap();
    assert!(status.success());
}

/// The containers (running or not) named after xtask process `pid`.
fn containers_of(pid: u32) -> Vec<String> {
    let filter = format!("name=memrepro-{pid}-");
    let listed = Command::new("docker").args(["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"]).output().unwrap();
    assert!(listed.status.success());
    String::from_utf8_lossy(&listed.stdout).lines().map(str::to_string).collect()
}

/// An interrupted xtask: exit 130, no verdict, nothing of its own left running or on disk but
/// its run directory, which says it was interrupted and how to go on.
fn assert_interrupted(output: &Output, pid: u32, run: &Path, by: &str) {
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(130), "{}", describe(output));
    assert!(!stdout.contains("VERDICT") && !stderr.contains("VERDICT"), "{}", describe(output));
    assert!(stderr.contains(&format!("interrupted by {by}")), "{stderr}");
    assert_eq!(containers_of(pid), Vec::<String>::new(), "containers left");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    assert!(!workspace.join(format!("target/repro-image-{pid}")).exists(), "image context left");
    let note = std::fs::read_to_string(run.join("interrupted")).expect("the run directory says it was interrupted");
    assert!(note.starts_with(&format!("interrupted by {by}")) && note.contains("--resume"), "{note}");
    assert!(!run.join("report.json").exists());
}

#[test]
fn ctrl_c_and_sigterm_stop_a_repro_removing_what_it_started_and_resume_finishes_it() {
    let temp = tempfile::tempdir().unwrap();
    let chain = generated_chain(temp.path(), BLOCKS, 9);
    let args = chain_repro(&chain, &[]);
    let out = temp.path().join("out");

    // Ctrl-C at a terminal: SIGINT to the foreground process group, while `256m` runs.
    let mut child = start(&args, &out, &temp.path().join("first"));
    let pid = child.id();
    let run = wait_for_blocks(&mut child, &out, "256m", 100);
    signal(-(pid as i32), "INT");
    let output = ended(child, &temp.path().join("first"), STOPS_WITHIN);
    assert_interrupted(&output, pid, &run, "SIGINT (Ctrl-C)");
    assert!(!run.join("256m/exit.json").exists(), "the interrupted profile has not ended");

    // SIGTERM to the xtask alone, while `1g` runs in the resumed run.
    let mut resume = args.clone();
    resume.push("--resume".into());
    let mut child = start(&resume, &out, &temp.path().join("second"));
    let pid = child.id();
    wait_for_blocks(&mut child, &out, "1g", 50);
    signal(pid as i32, "TERM");
    let output = ended(child, &temp.path().join("second"), STOPS_WITHIN);
    assert_interrupted(&output, pid, &run, "SIGTERM");
    assert!(run.join("256m/exit.json").exists(), "`256m` ended in the resumed run");

    let output = xtask(&resume.iter().map(String::as_str).collect::<Vec<_>>(), &out);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(report(&out)["verdict"], "identical");
    assert!(!run.join("interrupted").exists(), "a finished run is no longer marked interrupted");
    let last = read_json(&run.join("1g/result.json"));
    assert!(last["resumed_after"].as_u64().unwrap() >= 49, "{last}");
}

#[test]
fn a_run_that_commits_nothing_for_stall_secs_is_killed_and_reported_stalled_at_its_height() {
    let temp = tempfile::tempdir().unwrap();
    let chain = generated_chain(temp.path(), BLOCKS, 9);
    let out = temp.path().join("out");
    let args = chain_repro(&chain, &["--stall-secs", "5"]);
    let mut child = start(&args, &out, &temp.path().join("logs"));
    let pid = child.id();
    let run = wait_for_blocks(&mut child, &out, "256m", 100);
    // A hang, as a stuck disk or a deadlock would leave it: every process of the container frozen.
    let container = std::fs::read_to_string(run.join("256m/container")).unwrap();
    let paused = Command::new("docker").args(["pause", container.trim()]).output().unwrap();
    assert!(paused.status.success(), "{}", String::from_utf8_lossy(&paused.stderr));
    let paused_at = Instant::now();
    let output = ended(child, &temp.path().join("logs"), RUNS_WITHIN);
    assert!(paused_at.elapsed() >= Duration::from_secs(5), "killed only after stall_secs");
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let report = report(&out);
    let stalled = &report["profiles"][0];
    assert_eq!(stalled["outcome"], "stalled", "{stalled}");
    // It was at the block after the last it committed, as the database it left says (its report
    // of that block may not have been appended yet when the container froze).
    let tip = read_json(&run.join("256m/state.json"))["tip"].as_u64().unwrap();
    assert_eq!(stalled["height"].as_u64(), Some(tip + 1), "{stalled}");
    let reported = std::fs::read_to_string(run.join("256m/blocks.jsonl")).unwrap().lines().count() as u64;
    assert!(reported == tip + 1 || reported == tip, "{reported} reports, tip {tip}");
    let reason = report["verdict_reason"].as_str().unwrap();
    assert!(reason.starts_with(&format!("`256m` stalled at height {} but `1g` completed", tip + 1)), "{reason}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("no block committed for 5 s (stall_secs), so the harness killed it"), "{stdout}");
    assert_eq!(containers_of(pid), Vec::<String>::new());
}

#[test]
fn two_repros_at_once_keep_to_their_own_and_one_interrupted_leaves_the_other_whole() {
    let temp = tempfile::tempdir().unwrap();
    let chain = generated_chain(temp.path(), BLOCKS, 9);
    let args = chain_repro(&chain, &[]);
    // The same output directory, started in the same second.
    let out = temp.path().join("out");
    let mut first = start(&args, &out, &temp.path().join("first"));
    let second = start(&args, &out, &temp.path().join("second"));
    let (first_pid, second_pid) = (first.id(), second.id());
    let started = Instant::now();
    while containers_of(first_pid).is_empty() || containers_of(second_pid).is_empty() {
        assert!(first.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(600), "both run at once");
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(-(first_pid as i32), "INT");
    let interrupted = ended(first, &temp.path().join("first"), STOPS_WITHIN);
    assert_eq!(interrupted.status.code(), Some(130), "{}", describe(&interrupted));
    assert_eq!(containers_of(first_pid), Vec::<String>::new());

    let output = ended(second, &temp.path().join("second"), RUNS_WITHIN);
    assert_eq!(output.status.code(), Some(0), "the other run is whole: {}", describe(&output));
    let runs: Vec<PathBuf> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(runs.len(), 2, "a run directory each: {runs:?}");
    let finished: Vec<&PathBuf> = runs.iter().filter(|run| run.join("report.json").exists()).collect();
    assert_eq!(finished.len(), 1, "{runs:?}");
    assert_eq!(read_json(&finished[0].join("report.json"))["verdict"], "identical");
    assert!(runs.iter().any(|run| run.join("interrupted").exists()), "{runs:?}");
    assert_eq!(containers_of(second_pid), Vec::<String>::new());
}

/// A filesystem of `mib` MiB mounted at `dir` (tmpfs), unmounted when dropped.
struct SmallDisk {
    dir: PathBuf,
    prefix: Vec<String>,
}

impl SmallDisk {
    fn mount(dir: &Path, mib: u32, prefix: Vec<String>) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let status = privileged(&prefix, &["mount", "-t", "tmpfs", "-o", &format!("size={mib}m,mode=0777"), "tmpfs", dir.to_str().unwrap()]);
        assert!(status.success(), "mounting a tmpfs at {}", dir.display());
        Self { dir: dir.to_path_buf(), prefix }
    }

    /// Fills it but for `left` bytes.
    fn fill_leaving(&self, left: u64) -> PathBuf {
        let filler = self.dir.join("filler");
        let free = fs_free(&self.dir);
        let file = std::fs::File::create(&filler).unwrap();
        use std::io::Write;
        let mut writer = std::io::BufWriter::new(file);
        let chunk = vec![0xA5u8; 1 << 20];
        let mut written = 0u64;
        while written + (1 << 20) + left <= free {
            writer.write_all(&chunk).unwrap();
            written += 1 << 20;
        }
        writer.flush().unwrap();
        filler
    }
}

fn fs_free(dir: &Path) -> u64 {
    let output = Command::new("df").args(["--output=avail", "-B1"]).arg(dir).output().unwrap();
    String::from_utf8_lossy(&output.stdout).lines().nth(1).unwrap().trim().parse().unwrap()
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        privileged(&self.prefix, &["umount", "-l", self.dir.to_str().unwrap()]);
    }
}

/// `command` run as root, through `prefix` (empty as root, `sudo -n` otherwise).
fn privileged(prefix: &[String], command: &[&str]) -> std::process::ExitStatus {
    let argv: Vec<&str> = prefix.iter().map(String::as_str).chain(command.iter().copied()).collect();
    Command::new(argv[0]).args(&argv[1..]).status().unwrap()
}

#[test]
fn a_disk_that_fills_mid_run_is_a_harness_error_and_resume_with_space_ends_as_an_uninterrupted_run() {
    let temp = tempfile::tempdir().unwrap();
    let chain = generated_chain(temp.path(), BLOCKS, 9);
    let args = chain_repro(&chain, &[]);
    let whole = temp.path().join("whole");
    let output = xtask(&args.iter().map(String::as_str).collect::<Vec<_>>(), &whole);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let uninterrupted = report(&whole);

    // Mounting needs root (CI's first pass) or passwordless sudo (GitHub's `runner`).
    let Some(prefix) = as_root() else {
        eprintln!("a_disk_that_fills_mid_run: mounting a tmpfs needs root or passwordless sudo, which this user has neither of: the root pass covers it");
        return;
    };
    let disk = SmallDisk::mount(&temp.path().join("small"), 256, prefix);
    let out = disk.dir.join("out");
    // A little room: the input and a few hundred blocks of the first profile's database.
    let filler = disk.fill_leaving(3 << 20);
    let output = xtask(&args.iter().map(String::as_str).collect::<Vec<_>>(), &out);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let all = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(all.contains("No space left on device"), "{}", describe(&output));
    assert!(!all.contains("VERDICT: identical") && !all.contains("VERDICT: DIFFERENT"), "{}", describe(&output));

    // With space again, the run goes on from what each profile committed and ends as the
    // uninterrupted run did: nothing was left corrupt.
    std::fs::remove_file(filler).unwrap();
    let mut resume = args.clone();
    resume.push("--resume".into());
    let output = xtask(&resume.iter().map(String::as_str).collect::<Vec<_>>(), &out);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let resumed = report(&out);
    assert_eq!(resumed["verdict"], "identical");
    let roots = |r: &Value| r["profiles"].as_array().unwrap().iter().map(|p| p["state_root"].clone()).collect::<Vec<_>>();
    assert_eq!(roots(&resumed), roots(&uninterrupted));
}

/// How this user may run what needs root: as root, or through passwordless sudo (GitHub's
/// `runner`); `None` when neither.
fn as_root() -> Option<Vec<String>> {
    let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    let sudo = || Command::new("sudo").args(["-n", "true"]).output().is_ok_and(|o| o.status.success());
    if root {
        Some(Vec::new())
    } else if sudo() {
        Some(vec!["sudo".into(), "-n".into()])
    } else {
        None
    }
}

/// A Docker daemon of the test's own, on its own socket, data, exec root, containerd namespace
/// and bridge: restarting it touches no other test's containers. (Not `--bridge=none`: a daemon
/// started so deletes the machine's `docker0`, which the other daemon's containers use.)
struct PrivateDaemon {
    dir: PathBuf,
    prefix: Vec<String>,
    bridge: String,
    daemon: Option<Child>,
}

impl PrivateDaemon {
    fn start(dir: &Path, prefix: Vec<String>) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        // Its own configuration: none of the machine's daemon.json.
        std::fs::write(dir.join("daemon.json"), "{}").unwrap();
        let bridge = format!("mrt{}", std::process::id() % 100_000);
        for command in [
            vec!["ip", "link", "add", bridge.as_str(), "type", "bridge"],
            vec!["ip", "addr", "add", "10.254.254.1/24", "dev", bridge.as_str()],
            vec!["ip", "link", "set", bridge.as_str(), "up"],
        ] {
            assert!(privileged(&prefix, &command).success(), "{command:?}");
        }
        let mut daemon = Self { dir: dir.to_path_buf(), prefix, bridge, daemon: None };
        daemon.launch();
        daemon
    }

    fn host(&self) -> String {
        format!("unix://{}/docker.sock", self.dir.display())
    }

    fn launch(&mut self) {
        let dir = self.dir.display();
        let namespace = format!("memrepro-test-{}", std::process::id());
        let mut args: Vec<String> = self.prefix.clone();
        args.extend(
            [
                "dockerd", &format!("--config-file={dir}/daemon.json"), &format!("--host={}", self.host()), &format!("--data-root={dir}/data"), &format!("--exec-root={dir}/exec"),
                &format!("--pidfile={dir}/docker.pid"), &format!("--bridge={}", self.bridge), "--iptables=false", "--ip-masq=false", "--storage-driver=vfs",
                &format!("--containerd-namespace={namespace}"), &format!("--containerd-plugins-namespace={namespace}-plugins"), "--group=docker",
            ]
            .map(String::from),
        );
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("dockerd.log")).unwrap();
        self.daemon = Some(Command::new(&args[0]).args(&args[1..]).stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap());
        let started = Instant::now();
        while !Command::new("docker").args(["-H", &self.host(), "info"]).output().is_ok_and(|o| o.status.success()) {
            let log = std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
            let exited = self.daemon.as_mut().unwrap().try_wait().unwrap();
            assert!(exited.is_none() && started.elapsed() < Duration::from_secs(60), "the private dockerd did not answer ({exited:?}): {log}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the daemon (as `systemctl restart docker` does: SIGTERM, it stops its containers)
    /// and starts it again.
    fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    fn stop(&mut self) {
        let Some(mut daemon) = self.daemon.take() else { return };
        let pid = std::fs::read_to_string(self.dir.join("docker.pid")).unwrap_or_else(|_| daemon.id().to_string());
        privileged(&self.prefix, &["kill", "-TERM", pid.trim()]);
        let _ = daemon.wait();
    }
}

impl Drop for PrivateDaemon {
    fn drop(&mut self) {
        self.stop();
        privileged(&self.prefix, &["ip", "link", "del", &self.bridge]);
        // The daemon's files are root's (vfs layers): removed as root.
        privileged(&self.prefix, &["rm", "-rf", self.dir.to_str().unwrap()]);
    }
}

#[test]
fn a_docker_daemon_restarted_mid_run_is_a_harness_error_naming_it_never_a_verdict() {
    let Some(prefix) = as_root() else {
        eprintln!("a_docker_daemon_restarted_mid_run: a private dockerd needs root or passwordless sudo, which this user has neither of: the root pass covers it");
        return;
    };
    let temp = tempfile::tempdir().unwrap();
    let chain = generated_chain(temp.path(), BLOCKS, 9);
    let mut daemon = PrivateDaemon::start(&temp.path().join("d"), prefix);
    let out = temp.path().join("out");
    let logs = temp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut child = xtask_command()
        .args(chain_repro(&chain, &[]))
        .arg("--out-dir")
        .arg(&out)
        .env("DOCKER_HOST", daemon.host())
        .stdout(std::fs::File::create(logs.join("stdout")).unwrap())
        .stderr(std::fs::File::create(logs.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let run = wait_for_blocks(&mut child, &out, "256m", 100);
    daemon.restart();
    let output = ended(child, &logs, RUNS_WITHIN);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: repro: the Docker daemon lost the run of container memrepro-"), "{}", describe(&output));
    assert!(last.contains("was the daemon restarted or stopped? Nothing of this run is evidence"), "{last}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("VERDICT"), "{}", describe(&output));
    assert!(!run.join("report.json").exists() && !run.join("256m/exit.json").exists());
}
