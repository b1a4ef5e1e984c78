//! The README's "Try it in five minutes" section, run as written: its shell blocks are taken from
//! README.md itself, so the tour a newcomer follows cannot drift from what the binary does.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_dts-ledger");
const SECTION: &str = "## Try it in five minutes";
/// Bytes of the smallest built-in SKU (DTS 1TB), which the tour buys and then uses up.
const PACKAGE_BYTES: u64 = 1 << 40;
/// How long a tour's processes get to stop on SIGTERM (the service stops its cluster first)
/// before they are killed: a clean stop takes a few seconds even on a loaded machine.
const STOP_WAIT_S: u64 = 60;

/// The `sh` blocks of the README section named `heading`, in order; panics naming what is
/// missing, so a renamed heading or a lost block fails here and not somewhere obscure.
fn shell_blocks(readme: &str, heading: &str) -> Vec<String> {
    let mut lines = readme.lines().skip_while(|line| line.trim_end() != heading);
    assert!(
        lines.next().is_some(),
        "README.md has no section {heading:?}: the tour test runs that section's commands"
    );
    let mut blocks = Vec::new();
    let mut block: Option<String> = None;
    for line in lines {
        match &mut block {
            None if line.starts_with("## ") => break,
            None if line.trim_end() == "```sh" => block = Some(String::new()),
            None => {}
            Some(text) if line.trim_end() == "```" => {
                blocks.push(std::mem::take(text));
                block = None;
            }
            Some(text) => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    assert!(
        block.is_none(),
        "README.md {heading:?}: a ```sh block is not closed"
    );
    assert!(
        !blocks.is_empty(),
        "README.md {heading:?} has no ```sh blocks to run"
    );
    blocks
}

/// The tour's process group: on drop (the test passed, failed or panicked) every process still
/// in it gets SIGTERM, so that a service the tour left running stops its cluster, then SIGKILL;
/// a cluster whose service was killed is shut down too.
struct TourProcesses {
    group: i32,
    root: PathBuf,
}

impl Drop for TourProcesses {
    fn drop(&mut self) {
        // SAFETY: signalling the process group this test created.
        unsafe { libc::killpg(self.group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(STOP_WAIT_S);
        // SAFETY: signal 0 only asks whether the group still has a member.
        while unsafe { libc::killpg(self.group, 0) } == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        // SAFETY: as above.
        unsafe { libc::killpg(self.group, libc::SIGKILL) };
        for pid_file in postmaster_pid_files(&self.root) {
            let pid = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|text| text.lines().next()?.trim().parse::<i32>().ok());
            if let Some(pid) = pid {
                // SAFETY: the postmaster of a cluster this test's tour created; SIGQUIT is
                // its immediate shutdown.
                unsafe { libc::kill(pid, libc::SIGQUIT) };
            }
        }
    }
}

/// `postmaster.pid` files of running clusters under `root` (the tour's data dir is a few levels
/// down, in the directory it made with `mktemp -d`).
fn postmaster_pid_files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                pending.push(path);
            } else if entry.file_name() == "postmaster.pid" {
                found.push(path);
            }
        }
    }
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every output line that is a JSON object: the service's answers as curl and `marketplace`
/// print them.
fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(serde_json::Value::is_object)
        .collect()
}

#[test]
fn the_readme_tour_runs_as_written() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md is readable");
    let script = shell_blocks(&readme, SECTION).join("\n");

    // The tour makes its own directory with `mktemp -d`: TMPDIR puts it in ours, which the
    // `postgres` user must be able to enter when the tests run as root.
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let stdout_path = root.path().join("tour.stdout");
    let stderr_path = root.path().join("tour.stderr");
    let bin_dir = Path::new(BINARY).parent().unwrap();
    let path = match std::env::var_os("PATH") {
        Some(path) => {
            let mut dirs = vec![bin_dir.to_path_buf()];
            dirs.extend(std::env::split_paths(&path));
            std::env::join_paths(dirs).unwrap()
        }
        None => bin_dir.as_os_str().to_owned(),
    };
    let port = free_port();

    let mut command = Command::new("bash");
    command
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(root.path())
        .env("PATH", path)
        .env("TMPDIR", root.path())
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        // Files, not pipes: a service the tour left running would hold a pipe open forever.
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .process_group(0);
    // The tour's settings come from the tour alone, not from whoever runs the tests.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("LEDGER_") || name == "DATABASE_URL" || name == "RUST_LOG" {
            command.env_remove(&*name);
        }
    }
    let mut child = command.spawn().expect("bash starts");
    let _processes = TourProcesses {
        group: child.id() as i32,
        root: root.path().to_path_buf(),
    };
    let status = child.wait().unwrap();

    let stdout = std::fs::read_to_string(&stdout_path).unwrap();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    let serve_logs: Vec<String> = std::fs::read_dir(root.path())
        .unwrap()
        .flatten()
        .map(|entry| entry.path().join("serve.log"))
        .filter_map(|log| std::fs::read_to_string(log).ok())
        .collect();
    let context = format!(
        "--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- serve.log\n{}",
        serve_logs.join("\n")
    );
    assert!(status.success(), "the tour failed ({status})\n{context}");

    let answers = json_lines(&stdout);
    let bought = answers
        .iter()
        .find(|answer| answer["instanceId"] == "1001" && answer.get("appInfo").is_some())
        .unwrap_or_else(|| panic!("no package bought\n{context}"));
    assert_eq!(
        bought["info"]["bytesGranted"],
        PACKAGE_BYTES.to_string(),
        "{context}"
    );
    let reported = answers
        .iter()
        .find_map(|answer| answer["results"].get(0))
        .unwrap_or_else(|| panic!("no traffic answer\n{context}"));
    assert_eq!(reported["status"], "accepted", "{context}");
    assert_eq!(reported["action"], "stop", "{context}");
    assert_eq!(reported["bytesRemaining"], 0, "{context}");
    let task = answers
        .iter()
        .rfind(|answer| answer["taskId"] == "task-1" && answer.get("state").is_some())
        .unwrap_or_else(|| panic!("no task read back\n{context}"));
    assert_eq!(task["state"], "stopped", "{context}");
    assert_eq!(task["stopReason"], "quota_exhausted", "{context}");
    assert_eq!(task["bytesConsumed"], PACKAGE_BYTES, "{context}");

    let link_prefix = format!("http://127.0.0.1:{port}/v1/cloud/order?action=verify&");
    assert!(
        stdout.lines().any(|line| line.starts_with(&link_prefix)
            && line.contains("instanceId=1001")
            && line.contains("&token=")),
        "no console sign-in link\n{context}"
    );
    let verified = stdout
        .lines()
        .find(|line| line.starts_with("verify: intact"))
        .unwrap_or_else(|| panic!("verify did not say intact\n{context}"));
    assert!(
        !verified.contains(" checkpoints=0 "),
        "verify held the ledger against no checkpoint: {verified}"
    );
    assert!(
        stdout.lines().any(|line| line.starts_with("1001 ")
            && line.contains(&PACKAGE_BYTES.to_string())
            && line.contains("1000.00")),
        "the report shows no package 1001 used up\n{context}"
    );
    assert!(
        postmaster_pid_files(root.path()).is_empty(),
        "the tour left its cluster running\n{context}"
    );
}

#[test]
fn a_missing_tour_section_or_block_is_named() {
    let missing = std::panic::catch_unwind(|| shell_blocks("# x\n## Other\n", SECTION))
        .expect_err("no section");
    let message = missing.downcast_ref::<String>().unwrap();
    assert!(message.contains("no section"), "{message}");

    let empty = std::panic::catch_unwind(|| {
        shell_blocks(
            "## Try it in five minutes\ntext\n## Next\n```sh\nls\n```\n",
            SECTION,
        )
    })
    .expect_err("no block in the section");
    let message = empty.downcast_ref::<String>().unwrap();
    assert!(message.contains("no ```sh blocks"), "{message}");

    assert_eq!(
        shell_blocks(
            "## Try it in five minutes\n```sh\na\n```\n```toml\nx\n```\n```sh\nb\nc\n```\n## Next\n```sh\nd\n```\n",
            SECTION,
        ),
        ["a\n", "b\nc\n"]
    );
}
