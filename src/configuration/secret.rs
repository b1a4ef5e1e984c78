//! Secrets and where they come from: the environment overrides the file.

use serde::Deserialize;
use std::fmt;

/// Shortest secret or token accepted, in characters: anything shorter can be guessed.
pub const SECRET_CHARS_MIN: usize = 16;

/// A value that must never reach a log line, an error message or the ledger.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where a secret setting is read: its key in the file and the environment variable that
/// overrides it. The pair also names the setting in errors, so an operator finds both places.
#[derive(Debug, Clone, Copy)]
pub(super) struct SecretSource {
    pub key: &'static str,
    pub var: &'static str,
}

impl SecretSource {
    /// The environment's value if set, else the file's; an empty value means "not set", so an
    /// operator can blank a secret out from the environment.
    pub fn read(
        self,
        env: &dyn Fn(&str) -> Option<String>,
        file: Option<Secret>,
    ) -> Option<Secret> {
        env(self.var)
            .map(Secret::new)
            .or(file)
            .filter(|secret| !secret.expose().is_empty())
    }

    /// [`SecretSource::read`], refusing a value too short to resist guessing.
    pub fn read_strong(
        self,
        env: &dyn Fn(&str) -> Option<String>,
        file: Option<Secret>,
    ) -> Result<Option<Secret>, String> {
        let secret = self.read(env, file);
        if let Some(secret) = &secret {
            self.check_strength(secret)?;
        }
        Ok(secret)
    }

    /// Refuses a non-empty secret shorter than [`SECRET_CHARS_MIN`] characters.
    pub fn check_strength(self, secret: &Secret) -> Result<(), String> {
        let chars = secret.expose().chars().count();
        if chars == 0 || chars >= SECRET_CHARS_MIN {
            Ok(())
        } else {
            Err(format!(
                "{} ({}) must be at least {SECRET_CHARS_MIN} characters",
                self.key, self.var
            ))
        }
    }
}
