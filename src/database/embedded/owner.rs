//! The PostgreSQL binaries installed on the machine, and the account their processes run as:
//! PostgreSQL refuses to run as root, so as root every PostgreSQL command runs as the `postgres`
//! user through `runuser` (`sudo` is not installed everywhere).

use super::{io_error, EmbeddedError};
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The directory holding `initdb`, `pg_ctl` and `postgres`.
pub fn find_binaries() -> Result<PathBuf, EmbeddedError> {
    let complete = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    if let Some(dir) = std::env::var_os("LEDGER_PG_BIN_DIR") {
        let dir = PathBuf::from(dir);
        return if complete(&dir) {
            Ok(dir)
        } else {
            Err(EmbeddedError::NoBinaries)
        };
    }
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(dir) = std::env::split_paths(&path).find(|dir| complete(dir)) {
            return Ok(dir);
        }
    }
    // Debian and Ubuntu keep the server binaries off PATH, one directory per major version.
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            complete(&bin).then_some((major, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or(EmbeddedError::NoBinaries)
}

/// The account the cluster's processes run as when this process is root.
#[derive(Debug, Clone, Copy)]
pub(super) struct RunAs {
    pub(super) uid: u32,
    pub(super) gid: u32,
}

pub(super) fn postgres_account() -> Option<RunAs> {
    let name = std::ffi::CString::new("postgres").expect("no NUL in a literal");
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer refers to live memory of the declared size; getpwnam_r is re-entrant.
    let status = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    (status == 0 && !found.is_null()).then_some(RunAs {
        uid: entry.pw_uid,
        gid: entry.pw_gid,
    })
}

fn find_runuser() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(["/usr/sbin".into(), "/sbin".into(), "/usr/bin".into()])
        .map(|dir| dir.join("runuser"))
        .find(|candidate| candidate.is_file())
}

/// How the cluster's commands run when this process is root: through `runuser` as `postgres`.
pub(super) fn owner_account() -> Result<Option<(PathBuf, RunAs)>, EmbeddedError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let account = postgres_account().ok_or(EmbeddedError::NoPostgresUser)?;
    Ok(Some((
        find_runuser().ok_or(EmbeddedError::NoRunuser)?,
        account,
    )))
}

/// `program`, one of the PostgreSQL binaries (`pg_basebackup`, `pg_verifybackup`, …), run as the
/// cluster's owner: through `runuser` as `postgres` when this process is root.
pub fn owner_command(program: &str) -> Result<Command, EmbeddedError> {
    let bin_dir = find_binaries()?;
    let mut executable = bin_dir.join(program);
    if !executable.is_file() {
        // A directory of links to the server binaries (`/usr/local/bin/postgres` →
        // `/usr/lib/postgresql/15/bin/postgres`): the other tools sit beside the real one.
        if let Some(real) = fs::canonicalize(bin_dir.join("postgres"))
            .ok()
            .and_then(|postgres| postgres.parent().map(|dir| dir.join(program)))
            .filter(|candidate| candidate.is_file())
        {
            executable = real;
        }
    }
    owner_command_path(&executable)
}

/// Makes `dir` (and its parents) if missing, private (0700) and, when this process is root,
/// owned by `postgres`, so that the cluster's own processes may write in it; then makes sure
/// that they can.
pub fn make_owner_dir(dir: &Path) -> Result<(), EmbeddedError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error(dir))?;
    if let Some((_, account)) = owner_account()? {
        std::os::unix::fs::chown(dir, Some(account.uid), Some(account.gid))
            .map_err(io_error(dir))?;
        let mut probe = owner_command_path(Path::new("test"))?;
        probe.arg("-w").arg(dir);
        if !probe.output().map(|o| o.status.success()).unwrap_or(false) {
            return Err(EmbeddedError::Unreachable(dir.to_owned()));
        }
    }
    Ok(())
}

/// Hands `path` to the cluster's owner (`postgres`) when this process is root; a no-op otherwise.
pub fn give_to_owner(path: &Path) -> Result<(), EmbeddedError> {
    if let Some((_, account)) = owner_account()? {
        std::os::unix::fs::chown(path, Some(account.uid), Some(account.gid))
            .map_err(io_error(path))?;
    }
    Ok(())
}

/// `executable` run as the cluster's owner (see [`owner_command`]).
pub fn owner_command_path(executable: &Path) -> Result<Command, EmbeddedError> {
    let account = owner_account()?;
    Ok(command_as(
        account.as_ref().map(|(runuser, _)| runuser.as_path()),
        executable,
    ))
}

/// `executable` run through `runuser` as `postgres` when `runuser` is given (this process is
/// root), as this process's user otherwise; in a process group of its own, so that a Ctrl-C in
/// the terminal reaches the service, which then stops the cluster after the in-flight requests
/// are answered, not the cluster first.
pub(super) fn command_as(runuser: Option<&Path>, executable: &Path) -> Command {
    let mut command = match runuser {
        Some(runuser) => {
            let mut command = Command::new(runuser);
            command.args(["-u", "postgres", "--"]).arg(executable);
            command
        }
        None => Command::new(executable),
    };
    command.process_group(0).env("LC_ALL", "C");
    command
}
