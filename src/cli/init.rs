//! `dts-ledger init`: a ready configuration with fresh secrets and a checkpoint signing key, so
//! that a newcomer can try the service without inventing keys or reading every document first,
//! and a new service signs checkpoints of its ledger from its first day.

use super::Invocation;
use crate::audit::checkpoint::{self, CheckpointError};
use crate::configuration::Catalog;
use clap::Args;
use rand::RngCore;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Write a ready configuration (fresh secrets, the built-in catalog) and say what to run next.
#[derive(Debug, Args)]
pub struct Init {
    /// The directory to write dts-ledger.toml in (created if missing).
    #[arg(default_value = ".")]
    dir: PathBuf,
}

impl Init {
    /// It writes the configuration the other commands read, so it cannot need one.
    pub async fn run(self, _: &Invocation) -> anyhow::Result<ExitCode> {
        let written = write_config(&self.dir)?;
        print!("{}", next_steps(&written, &self.dir.join("data")));
        Ok(ExitCode::SUCCESS)
    }
}

/// The file `init` writes in its directory.
pub const CONFIG_FILE_NAME: &str = "dts-ledger.toml";

/// The Ed25519 signing key `init` writes next to the configuration (as `dts-ledger keygen` does).
pub const SIGNING_KEY_FILE_NAME: &str = "dts-ledger-signing.key";

/// Random bytes per secret: 192 bits, far beyond guessing, and 48 hex characters, well above the
/// configuration's 16-character minimum.
const SECRET_BYTES: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(
        "{0} exists already: init never overwrites a configuration (its secrets may be in use)"
    )]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    SigningKey(#[from] CheckpointError),
    #[error("{0} is not UTF-8: the configuration cannot name it")]
    NotUtf8(PathBuf),
}

/// What `init` wrote, with the paths as the caller named them.
#[derive(Debug)]
pub struct Written {
    pub config: PathBuf,
    pub signing_key: PathBuf,
    /// The signing key's public key, 64 hex digits: not a secret, verifiers list it.
    pub public_key: String,
}

fn fresh_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The configuration text: fresh secrets, the signing key at `signing_key_file` and the built-in
/// catalog, each setting explained.
pub fn config_text(signing_key_file: &str) -> String {
    let mut text = format!(
        "# dts-ledger configuration, written by `dts-ledger init`.\n\
         # It holds secrets: keep it private (the file is created with mode 0600).\n\
         # Every setting is described in docs/operating.md, \"Configuration\".\n\
         \n\
         [marketplace]\n\
         # The ISV key the marketplace signs its callbacks with. For production, replace it with\n\
         # the key of your ISV back office; `dts-ledger marketplace` signs with it too.\n\
         key = \"{marketplace_key}\"\n\
         \n\
         [console]\n\
         # Signs order credentials (authCode) and console sessions.\n\
         secret = \"{console_secret}\"\n\
         \n\
         [api]\n\
         # Bearer token of operators and finance.\n\
         admin_token = \"{admin_token}\"\n\
         # Bearer tokens of DTS agents and the control plane.\n\
         reporter_tokens = [\"{reporter_token}\"]\n\
         \n\
         [audit]\n\
         # The Ed25519 key `serve` signs a checkpoint of the ledger with (every 300 s when it\n\
         # moved); `dts-ledger verify` checks them. Keep a copy of it, and of its public key, safe.\n\
         signing_key_file = {signing_key_file}\n\
         \n\
         # The SKU catalog: one entry per marketplace charge item. These two are the built-in\n\
         # placeholders; list your own items and prices.\n",
        marketplace_key = fresh_secret(),
        console_secret = fresh_secret(),
        admin_token = fresh_secret(),
        reporter_token = fresh_secret(),
        signing_key_file = toml::Value::String(signing_key_file.to_owned()),
    );
    for sku in Catalog::built_in().iter() {
        text.push_str(&format!(
            "\n[[sku]]\nid = \"{}\"\nname = \"{}\"\nbytes = {}\nprice = \"{}\"\ncurrency = \"{}\"\n",
            sku.id,
            sku.name,
            sku.bytes.get(),
            sku.price,
            sku.currency
        ));
    }
    text
}

/// Writes `<dir>/dts-ledger.toml` (creating `dir` if needed) and a fresh signing key beside it,
/// both readable by their owner only, never over an existing file, and both or neither.
pub fn write_config(dir: &Path) -> Result<Written, InitError> {
    let path = dir.join(CONFIG_FILE_NAME);
    let signing_key = dir.join(SIGNING_KEY_FILE_NAME);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InitError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    // The configuration names the key by its absolute path: `serve` may start from anywhere.
    let signing_key_absolute = dir
        .canonicalize()
        .map_err(io(dir))?
        .join(SIGNING_KEY_FILE_NAME);
    let signing_key_text = signing_key_absolute
        .to_str()
        .ok_or_else(|| InitError::NotUtf8(signing_key_absolute.clone()))?
        .to_owned();
    // Checked first so that a refusal writes nothing; keygen itself never overwrites either.
    if signing_key.exists() {
        return Err(InitError::Exists(signing_key));
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::AlreadyExists => InitError::Exists(path.clone()),
            _ => io(&path)(error),
        })?;
    let written = checkpoint::keygen(&signing_key)
        .map_err(InitError::from)
        .and_then(|public| {
            file.write_all(config_text(&signing_key_text).as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(io(&path))?;
            Ok(public)
        });
    match written {
        Ok(public) => Ok(Written {
            config: path,
            signing_key,
            public_key: hex::encode(public.as_bytes()),
        }),
        Err(error) => {
            // Both or neither: a configuration without its key, or a key nothing names, would
            // only make the next `init` refuse.
            let _ = std::fs::remove_file(&path);
            if !matches!(error, InitError::SigningKey(_)) {
                let _ = std::fs::remove_file(&signing_key);
            }
            Err(error)
        }
    }
}

/// What to run next, printed after the files are written. It names the files and the public key,
/// never a secret.
pub fn next_steps(written: &Written, data_dir: &Path) -> String {
    let config = written.config.display();
    let signing_key = written.signing_key.display();
    let public_key = &written.public_key;
    let data_dir = data_dir.display();
    format!(
        "wrote {config} (it holds secrets: keep it private)\n\
         wrote {signing_key} (the checkpoint signing key: keep it private, and a copy safe)\n\
         \x20 its public key, for verifiers' [audit] public_keys: {public_key}\n\
         \n\
         Try it next:\n\
         \x20 dts-ledger --config {config} --data-dir {data_dir} serve\n\
         \x20 dts-ledger --config {config} marketplace createInstance --param jdPin=alice \
         --param orderBizId=1001 --param orderId=1 --param serviceCode=dts \
         --param skuId=FW_GOODS-500232-1\n\
         \x20 dts-ledger --config {config} marketplace verify --instance 1001   \
         # a console sign-in link\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration::Config;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_written_file_loads_with_fresh_secrets_and_stays_private() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("new");
        let written = write_config(&target).unwrap();
        assert_eq!(written.config, target.join(CONFIG_FILE_NAME));
        assert_eq!(mode(&written.config), 0o600);
        let config = Config::load(Some(&written.config), |_| None).unwrap();
        assert!(config.marketplace_key.is_some());
        assert!(config.console_secret.is_some());
        assert!(config.admin_token.is_some());
        assert_eq!(config.reporter_tokens.len(), 1);
        assert!(!config.catalog_is_built_in);
        assert_eq!(
            config.catalog.iter().collect::<Vec<_>>(),
            Catalog::built_in().iter().collect::<Vec<_>>()
        );

        let other = write_config(&dir.path().join("other")).unwrap();
        let other = Config::load(Some(&other.config), |_| None).unwrap();
        assert_ne!(
            config.marketplace_key.unwrap().expose(),
            other.marketplace_key.unwrap().expose()
        );
        assert_ne!(config.audit.signing_key_file, other.audit.signing_key_file);
    }

    #[test]
    fn the_configuration_names_a_fresh_private_signing_key_by_its_absolute_path() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_config(dir.path()).unwrap();
        assert_eq!(written.signing_key, dir.path().join(SIGNING_KEY_FILE_NAME));
        assert_eq!(mode(&written.signing_key), 0o600);

        let config = Config::load(Some(&written.config), |_| None).unwrap();
        let named = config
            .audit
            .signing_key_file
            .expect("init sets a signing key");
        assert!(named.is_absolute(), "{}", named.display());
        assert_eq!(
            named,
            dir.path()
                .canonicalize()
                .unwrap()
                .join(SIGNING_KEY_FILE_NAME)
        );
        let key = checkpoint::load_signing_key(&named).unwrap();
        assert_eq!(
            hex::encode(key.verifying_key().as_bytes()),
            written.public_key
        );

        let other = write_config(&dir.path().join("other")).unwrap();
        assert_ne!(other.public_key, written.public_key);
    }

    #[test]
    fn a_path_with_quotes_is_written_as_valid_toml() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("it's \"here\"");
        let written = write_config(&target).unwrap();
        let config = Config::load(Some(&written.config), |_| None).unwrap();
        assert_eq!(
            config.audit.signing_key_file.unwrap(),
            target.canonicalize().unwrap().join(SIGNING_KEY_FILE_NAME)
        );
    }

    #[test]
    fn an_existing_configuration_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_config(dir.path()).unwrap();
        let before = std::fs::read(&written.config).unwrap();
        let key_before = std::fs::read(&written.signing_key).unwrap();
        assert!(matches!(
            write_config(dir.path()),
            Err(InitError::Exists(_))
        ));
        assert_eq!(std::fs::read(&written.config).unwrap(), before);
        assert_eq!(std::fs::read(&written.signing_key).unwrap(), key_before);
    }

    #[test]
    fn an_existing_signing_key_is_kept_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join(SIGNING_KEY_FILE_NAME);
        std::fs::write(&key, "an operator's key\n").unwrap();
        match write_config(dir.path()) {
            Err(InitError::Exists(path)) => assert_eq!(path, key),
            other => panic!("expected a refusal naming the key, got {other:?}"),
        }
        assert_eq!(
            std::fs::read_to_string(&key).unwrap(),
            "an operator's key\n"
        );
        assert!(!dir.path().join(CONFIG_FILE_NAME).exists());
    }

    #[test]
    fn next_steps_name_the_files_and_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_config(dir.path()).unwrap();
        let steps = next_steps(&written, &dir.path().join("data"));
        assert!(steps.contains(&written.config.display().to_string()));
        assert!(steps.contains(&written.signing_key.display().to_string()));
        assert!(steps.contains(&written.public_key));
        assert_eq!(
            steps.matches("\n  dts-ledger ").count(),
            3,
            "three commands to try: {steps}"
        );
        let text = std::fs::read_to_string(&written.config).unwrap();
        let mut secrets: Vec<String> = text
            .lines()
            .filter(|line| line.contains(" = \"") || line.contains(" = [\""))
            .filter_map(|line| line.split('"').nth(1).map(str::to_owned))
            .filter(|value| value.len() >= 2 * SECRET_BYTES)
            .collect();
        assert_eq!(secrets.len(), 4, "key, console secret, two tokens");
        secrets.push(
            std::fs::read_to_string(&written.signing_key)
                .unwrap()
                .trim()
                .to_owned(),
        );
        for secret in secrets {
            assert!(!steps.contains(&secret), "next steps show a secret");
        }
    }
}
