//! The cluster's socket directory: the only way in (the cluster listens on no TCP port), so it is
//! private to the cluster's owner, and one that already exists is used only if nobody else can
//! have made it.

use super::owner::RunAs;
use super::{io_error, EmbeddedError, SOCKET_DIR_BYTES_MAX};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The socket directory: inside the data directory when its path is short enough for a Unix
/// socket address, else a directory under /tmp named after the data directory.
pub(super) fn choose_socket_dir(root: &Path) -> PathBuf {
    let inside = root.join("run");
    if inside.as_os_str().len() <= SOCKET_DIR_BYTES_MAX {
        return inside;
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(root.as_os_str().as_encoded_bytes());
    PathBuf::from(format!("/tmp/dts-ledger-{}", hex::encode(&digest[..8])))
}

/// Makes the socket directory, private to the cluster owner (`owner`, or this process's user), or
/// accepts the one an earlier start made. Its name under /tmp is predictable, so any local user
/// could make it first, or leave a symbolic link there for root to hand over to `postgres`: the
/// directory is created exclusively, and an existing one is accepted only as [`check_socket_dir`]
/// says.
pub(super) fn secure_socket_dir(dir: &Path, owner: Option<RunAs>) -> Result<(), EmbeddedError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let owner_uid = owner.map_or_else(|| unsafe { libc::geteuid() }, |account| account.uid);
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {
            // Ours, in a directory others cannot rename entries of (/tmp is sticky, the data
            // directory private): neither call below can be redirected.
            if let Some(account) = owner {
                std::os::unix::fs::lchown(dir, Some(account.uid), Some(account.gid))
                    .map_err(io_error(dir))?;
            }
            // The umask may have taken bits away; the check of the next start wants exactly 0700.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_error(dir))?;
            check_socket_dir(dir, owner_uid)
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            check_socket_dir(dir, owner_uid)
        }
        Err(error) => Err(io_error(dir)(error)),
    }
}

/// An existing socket directory is used only if it is a real directory (not a symbolic link),
/// owned by `owner_uid` and with mode 0700: only that user or root can have made it so.
pub(super) fn check_socket_dir(dir: &Path, owner_uid: u32) -> Result<(), EmbeddedError> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |reason: String| EmbeddedError::UnsafeSocketDir {
        path: dir.to_owned(),
        reason,
    };
    let metadata = fs::symlink_metadata(dir).map_err(io_error(dir))?;
    if metadata.file_type().is_symlink() {
        return Err(refuse("it is a symbolic link".into()));
    }
    if !metadata.is_dir() {
        return Err(refuse("it is not a directory".into()));
    }
    if metadata.uid() != owner_uid {
        return Err(refuse(format!(
            "it belongs to uid {}, not to the cluster's owner (uid {owner_uid})",
            metadata.uid()
        )));
    }
    let mode = metadata.mode() & 0o7777;
    if mode != 0o700 {
        return Err(refuse(format!("its mode is {mode:o}, not 700")));
    }
    Ok(())
}

#[cfg(test)]
mod socket_dir_tests {
    use super::*;
    use crate::database::embedded::{find_binaries, Durability, EmbeddedPostgres};
    use std::os::unix::fs::MetadataExt;

    fn me() -> u32 {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() }
    }

    fn refused(result: Result<(), EmbeddedError>) -> String {
        match result {
            Err(error @ EmbeddedError::UnsafeSocketDir { .. }) => error.to_string(),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_new_socket_directory_is_private_and_accepted_again_on_the_next_start() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("run");
        secure_socket_dir(&dir, None).unwrap();
        let metadata = fs::symlink_metadata(&dir).unwrap();
        assert_eq!(metadata.mode() & 0o7777, 0o700);
        assert_eq!(metadata.uid(), me());
        secure_socket_dir(&dir, None).unwrap();
    }

    #[test]
    fn a_socket_directory_with_another_mode_is_refused() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("run");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let message = refused(secure_socket_dir(&dir, None));
        assert!(message.contains("mode is 777"), "{message}");
        assert!(message.contains(&dir.display().to_string()), "{message}");
    }

    #[test]
    fn a_socket_directory_owned_by_someone_else_is_refused() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("run");
        fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        let stranger = me().wrapping_add(4242);
        if me() == 0 {
            // Root can really hand it to someone else; then the expected owner is us.
            std::os::unix::fs::chown(&dir, Some(stranger), None).unwrap();
            let message = refused(secure_socket_dir(&dir, None));
            assert!(message.contains(&format!("uid {stranger}")), "{message}");
        } else {
            let owner = RunAs {
                uid: stranger,
                gid: stranger,
            };
            let message = refused(secure_socket_dir(&dir, Some(owner)));
            assert!(message.contains(&format!("uid {}", me())), "{message}");
        }
    }

    #[test]
    fn a_symbolic_link_in_place_of_the_socket_directory_is_refused() {
        let scratch = tempfile::tempdir().unwrap();
        let target = scratch.path().join("elsewhere");
        fs::DirBuilder::new().mode(0o700).create(&target).unwrap();
        let dir = scratch.path().join("run");
        std::os::unix::fs::symlink(&target, &dir).unwrap();
        let message = refused(secure_socket_dir(&dir, None));
        assert!(message.contains("symbolic link"), "{message}");
        let file = scratch.path().join("file");
        fs::write(&file, b"").unwrap();
        assert!(refused(secure_socket_dir(&file, None)).contains("not a directory"));
    }

    /// A real start on a data directory too long to hold the socket, whose /tmp fallback a local
    /// user made first as a link to a directory of theirs: refused, and the target left alone.
    #[test]
    fn a_start_whose_fallback_socket_directory_was_planted_is_refused() {
        if find_binaries().is_err() {
            panic!("PostgreSQL binaries are needed for this test");
        }
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("d".repeat(100));
        fs::create_dir_all(&root).unwrap();
        let root = root.canonicalize().unwrap();
        let planted = choose_socket_dir(&root);
        assert!(planted.starts_with("/tmp"), "{planted:?}");
        let target = scratch.path().join("theirs");
        fs::DirBuilder::new().mode(0o777).create(&target).unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o777)).unwrap();
        std::os::unix::fs::symlink(&target, &planted).unwrap();
        let started = EmbeddedPostgres::start(&root, Durability::Throwaway);
        fs::remove_file(&planted).unwrap();
        let message = match started {
            Err(error @ EmbeddedError::UnsafeSocketDir { .. }) => error.to_string(),
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert!(message.contains("symbolic link"), "{message}");
        let target_metadata = fs::symlink_metadata(&target).unwrap();
        assert_eq!(
            target_metadata.uid(),
            me(),
            "the link's target was handed over"
        );
        assert_eq!(target_metadata.mode() & 0o7777, 0o777);
        assert!(!root.join("pgdata").exists(), "nothing was initialised");
    }
}
