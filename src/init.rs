//! `dts-ledger init`: a ready configuration with fresh secrets, so that a newcomer can try the
//! service without inventing keys or reading the whole README first.

use crate::configuration::Catalog;
use rand::RngCore;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The file `init` writes in its directory.
pub const CONFIG_FILE_NAME: &str = "dts-ledger.toml";

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
}

fn fresh_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The configuration text: fresh secrets and the built-in catalog, each setting explained.
pub fn config_text() -> String {
    let mut text = format!(
        "# dts-ledger configuration, written by `dts-ledger init`.\n\
         # It holds secrets: keep it private (the file is created with mode 0600).\n\
         # Every setting is described in the README's Configuration section.\n\
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
         # The SKU catalog: one entry per marketplace charge item. These two are the built-in\n\
         # placeholders; list your own items and prices.\n",
        marketplace_key = fresh_secret(),
        console_secret = fresh_secret(),
        admin_token = fresh_secret(),
        reporter_token = fresh_secret(),
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

/// Writes `<dir>/dts-ledger.toml` (creating `dir` if needed), readable by its owner only, and
/// never over an existing file.
pub fn write_config(dir: &Path) -> Result<PathBuf, InitError> {
    let path = dir.join(CONFIG_FILE_NAME);
    let io = |source| InitError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::AlreadyExists => InitError::Exists(path.clone()),
            _ => io(error),
        })?;
    file.write_all(config_text().as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(path)
}

/// What to run next, printed after the file is written. It names the file, never a secret.
pub fn next_steps(config: &Path, data_dir: &Path) -> String {
    let config = config.display();
    let data_dir = data_dir.display();
    format!(
        "wrote {config} (it holds secrets: keep it private)\n\
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

    #[test]
    fn the_written_file_loads_with_fresh_secrets_and_stays_private() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("new");
        let path = write_config(&target).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let config = Config::load(Some(&path), |_| None).unwrap();
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
        let other = Config::load(Some(&other), |_| None).unwrap();
        assert_ne!(
            config.marketplace_key.unwrap().expose(),
            other.marketplace_key.unwrap().expose()
        );
    }

    #[test]
    fn an_existing_configuration_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(dir.path()).unwrap();
        let before = std::fs::read(&path).unwrap();
        assert!(matches!(
            write_config(dir.path()),
            Err(InitError::Exists(_))
        ));
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn next_steps_name_the_file_and_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(dir.path()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let steps = next_steps(&path, &dir.path().join("data"));
        assert!(steps.contains(&path.display().to_string()));
        for line in text.lines().filter(|l| l.contains(" = \"")) {
            let value = line.split('"').nth(1).unwrap();
            if value.len() >= 2 * SECRET_BYTES {
                assert!(!steps.contains(value), "next steps show a secret");
            }
        }
    }
}
