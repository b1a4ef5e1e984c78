use super::*;
use projections::ids::SkuId;
use std::io::Write;
use std::path::Path;

fn load(text: &str) -> Result<Config, ConfigError> {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    Config::load(Some(file.path()), |_| None)
}

#[test]
fn unknown_keys_are_named() {
    let err = load("[marketplace]\nkee = \"x\"\n").unwrap_err();
    assert!(err.message.contains("kee"), "{err}");
    let err =
        load("[[sku]]\nid=\"a\"\nname=\"n\"\nbytes=1\nprice=\"1\"\ncurrency=\"CNY\"\ncolour=1\n")
            .unwrap_err();
    assert!(err.message.contains("colour"), "{err}");
}

#[test]
fn skus_are_checked() {
    let sku = |bytes: &str, price: &str, currency: &str| {
        format!("[[sku]]\nid=\"a\"\nname=\"DTS\"\nbytes={bytes}\nprice=\"{price}\"\ncurrency=\"{currency}\"\n")
    };
    assert!(load(&sku("0", "1", "CNY"))
        .unwrap_err()
        .message
        .contains("bytes"));
    assert!(load(&sku("-1", "1", "CNY")).is_err());
    assert!(load(&sku("10", "abc", "CNY"))
        .unwrap_err()
        .message
        .contains("price"));
    assert!(load(&sku("10", "-1", "CNY")).is_err());
    assert!(load(&sku("10", "1", "yuan"))
        .unwrap_err()
        .message
        .contains("currency"));
    let twice = format!("{}{}", sku("10", "1", "CNY"), sku("10", "1", "CNY"));
    assert!(load(&twice).unwrap_err().message.contains("twice"));
    let config = load(&sku("1099511627776", "1000.00", "CNY")).unwrap();
    let parsed = config.catalog.get(&SkuId::parse("a").unwrap()).unwrap();
    assert_eq!(parsed.price.to_string(), "1000.00");
    assert!(!config.catalog_is_built_in);
}

#[test]
fn environment_overrides_the_file_key_and_secrets_do_not_print() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(b"[marketplace]\nkey = \"from-file\"\n")
        .unwrap();
    let config = Config::load(Some(file.path()), |name| {
        (name == "LEDGER_MARKETPLACE_KEY").then(|| "from-env".to_owned())
    })
    .unwrap();
    assert_eq!(
        config.marketplace_key.as_ref().unwrap().expose(),
        "from-env"
    );
    assert!(!format!("{config:?}").contains("from-env"));
    assert!(config.catalog_is_built_in);
}

#[test]
fn short_secrets_and_out_of_range_settings_are_refused() {
    assert!(load("[api]\nadmin_token = \"short\"\n")
        .unwrap_err()
        .message
        .contains("admin_token"));
    assert!(load("[console]\nsecret = \"short\"\n")
        .unwrap_err()
        .message
        .contains("secret"));
    assert!(load("[marketplace]\nverify_window_s = 0\n").is_err());
    assert!(load("[orders]\nexpiry_sweep_s = 99999\n").is_err());
    assert!(load("[runway]\nthresholds_days = [0]\n").is_err());
    assert!(load("[runway]\nthresholds_days = [400]\n").is_err());
    assert!(load("[runway]\ncheck_s = 0\n").is_err());
    assert!(load("[alerts]\nstopped_reporting_s = 0\n").is_err());
    let config =
        load("[runway]\nthresholds_days = [3, 14, 3]\n[alerts]\nstopped_reporting_s = 60\n")
            .unwrap();
    assert_eq!(config.runway_thresholds_days, vec![3, 14]);
    assert_eq!(config.stopped_reporting_s, 60);
    assert!(load("[console]\npublic_url = \"ftp://x\"\n").is_err());
    assert!(load("[console]\nrenew_url = \"javascript:alert(1)\"\n").is_err());
    let renew = load("[console]\nrenew_url = \"https://market.example.com/renew\"\n").unwrap();
    assert_eq!(
        renew.renew_url.as_deref(),
        Some("https://market.example.com/renew")
    );
    let config = load("[console]\npublic_url = \"https://dts.example.com/\"\n").unwrap();
    assert_eq!(
        config.public_url.as_deref(),
        Some("https://dts.example.com")
    );
    assert_eq!(config.verify_window_s, VERIFY_WINDOW_S_DEFAULT);
    assert_eq!(config.session_max_s, SESSION_MAX_S_DEFAULT);
    assert!(load("[console]\nsession_max_s = 0\n").is_err());
    assert!(load("[console]\nsession_max_s = 604801\n")
        .unwrap_err()
        .message
        .contains("console.session_max_s"));
    assert_eq!(
        load("[console]\nsession_max_s = 3600\n")
            .unwrap()
            .session_max_s,
        3600
    );
}

#[test]
fn traffic_and_webhook_settings_are_checked() {
    assert!(load("[webhook]\nurl = \"http://cp\"\n")
        .unwrap_err()
        .message
        .contains("secret"));
    assert!(load("[traffic]\nlow_balance_percents = [0]\n").is_err());
    assert!(load("[traffic]\nreport_bytes_max = 0\n").is_err());
    assert!(load("[api]\nreporter_tokens = [\"short\"]\n").is_err());
    let config = load(
        "[traffic]\nlow_balance_percents = [95, 50, 95]\n\
         [webhook]\nurl = \"http://cp/hook\"\nsecret = \"0123456789abcdef\"\n",
    )
    .unwrap();
    assert_eq!(config.low_balance_percents, vec![50, 95]);
    let webhook = config.webhook.unwrap();
    assert_eq!((webhook.retry_ms_base, webhook.timeout_ms), (1_000, 5_000));
    assert!(!format!("{webhook:?}").contains("0123456789abcdef"));
    assert_eq!(
        (webhook.attempts_max, webhook.age_s_max, webhook.retention_s),
        (20, 86_400, 604_800)
    );
}

#[test]
fn webhook_bounds_are_read_and_checked() {
    let hook = "[webhook]\nurl = \"http://cp/hook\"\nsecret = \"0123456789abcdef\"\n";
    let config = load(&format!(
        "{hook}attempts_max = 3\nage_max_s = 60\nretention_s = 3600\n"
    ))
    .unwrap();
    let webhook = config.webhook.unwrap();
    assert_eq!(
        (webhook.attempts_max, webhook.age_s_max, webhook.retention_s),
        (3, 60, 3_600)
    );
    for bad in [
        "attempts_max = 0",
        "attempts_max = 10001",
        "age_max_s = 0",
        "retention_s = 0",
        "retention_s = 99999999",
    ] {
        let error = load(&format!("{hook}{bad}\n")).unwrap_err();
        let key = bad.split(' ').next().unwrap();
        assert!(error.message.contains(key), "{bad}: {error}");
    }
}

#[test]
fn parse_errors_do_not_quote_the_line_with_a_secret() {
    let err = load("[marketplace]\nkey = \"sup3r\\qsecret\"\n").unwrap_err();
    assert!(err.message.contains("line 2"), "{err}");
    assert!(!err.to_string().contains("sup3r"), "{err}");
}

#[test]
fn a_missing_file_is_named() {
    let err = Config::load(Some(Path::new("/nonexistent/ledger.toml")), |_| None).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/ledger.toml"),
        "{err}"
    );
}

#[test]
fn webhook_keys_put_units_last_and_old_names_still_parse() {
    let hook = "[webhook]\nurl = \"http://cp/hook\"\nsecret = \"0123456789abcdef\"\n";
    let delays = |text: &str| {
        let webhook = load(&format!("{hook}{text}")).unwrap().webhook.unwrap();
        (
            webhook.retry_ms_base,
            webhook.retry_ms_max,
            webhook.age_s_max,
        )
    };
    assert_eq!(
        delays("retry_ms_base = 10\nretry_ms_max = 20\nage_s_max = 30\n"),
        (10, 20, 30)
    );
    assert_eq!(
        delays("retry_base_ms = 10\nretry_max_ms = 20\nage_max_s = 30\n"),
        (10, 20, 30)
    );
    let error = load(&format!("{hook}retry_ms_base = 0\n")).unwrap_err();
    assert!(error.message.contains("retry_ms_base"), "{error}");
}

#[test]
fn secret_lengths_are_counted_in_characters() {
    // Six characters of three bytes each: long enough in bytes, too short in characters.
    let err = load("[api]\nadmin_token = \"密码密码密码\"\n").unwrap_err();
    assert!(err.message.contains("16 characters"), "{err}");
    assert!(load(&format!("[api]\nadmin_token = \"{}\"\n", "密".repeat(16))).is_ok());
}

#[test]
fn the_metrics_address_is_an_ip_and_port_and_the_environment_overrides_it() {
    assert_eq!(load("").unwrap().metrics_listen, None);
    let config = load("[metrics]\nlisten = \"127.0.0.1:9464\"\n").unwrap();
    assert_eq!(
        config.metrics_listen,
        Some("127.0.0.1:9464".parse().unwrap())
    );
    let err = load("[metrics]\nlisten = \"somewhere\"\n").unwrap_err();
    assert!(err.message.contains("metrics.listen"), "{err}");
    let config = Config::load(None, |name| {
        (name == "LEDGER_METRICS_LISTEN").then(|| "0.0.0.0:9100".to_owned())
    })
    .unwrap();
    assert_eq!(config.metrics_listen, Some("0.0.0.0:9100".parse().unwrap()));
}

#[test]
fn the_wal_archive_is_an_absolute_path_the_archive_command_can_quote() {
    let config = load("[database]\nwal_archive_dir = \"/var/lib/dts-ledger-wal\"\n").unwrap();
    assert_eq!(
        config.wal_archive_dir.as_deref(),
        Some(Path::new("/var/lib/dts-ledger-wal"))
    );
    assert!(load("").unwrap().wal_archive_dir.is_none());
    for bad in ["relative/wal", "/var/it's", "/var/50%"] {
        let err = load(&format!("[database]\nwal_archive_dir = {:?}\n", bad)).unwrap_err();
        assert!(err.message.contains("database.wal_archive_dir"), "{err}");
    }
    let env = |name: &str| (name == "LEDGER_WAL_ARCHIVE_DIR").then(|| "/srv/wal".to_owned());
    let config = Config::load(None, env).unwrap();
    assert_eq!(
        config.wal_archive_dir.as_deref(),
        Some(Path::new("/srv/wal"))
    );
}

#[test]
fn the_trusted_checkpoint_file_is_read_from_the_file_or_the_environment() {
    let config = load("[audit]\ntrusted_checkpoint_file = \"/srv/cp.json\"\n").unwrap();
    assert_eq!(
        config.audit.trusted_checkpoint_file.as_deref(),
        Some(Path::new("/srv/cp.json"))
    );
    let env = |name: &str| (name == "LEDGER_TRUSTED_CHECKPOINT_FILE").then(|| "/x.json".to_owned());
    let config = Config::load(None, env).unwrap();
    assert_eq!(
        config.audit.trusted_checkpoint_file.as_deref(),
        Some(Path::new("/x.json"))
    );
}
