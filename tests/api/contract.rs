//! The served API document as a contract that tools nobody here wrote hold the service to: an
//! independent OpenAPI validator (`openapi-spec-validator`) and a property-based client
//! (`schemathesis`), with every check, as the admin and as a reporter. Their versions are pinned
//! in `tests/contract/requirements.txt` (`.ci/run` installs them); what schemathesis allows by
//! design is in `tests/contract/schemathesis.toml`, each with its reason.

use crate::helpers::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tool of `tests/contract/requirements.txt`, on `PATH`.
fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "{name} is not on PATH: install the contract tools with `pip install -r \
             tests/contract/requirements.txt` (.ci/run does)"
        )
    })
}

fn repository(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs `command` off the test's runtime (the server under test runs on it); exit status and
/// everything it printed.
async fn run(mut command: Command) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let output = command.output().expect("the tool runs");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), said)
    })
    .await
    .unwrap()
}

/// The document's examples name package `dts-1` and task `task-1`: make them exist.
async fn seeded() -> TestApp {
    let app = spawn_app().await;
    let code = app.buy_with_code("dts-1", "jd_user").await;
    assert_eq!(code.len(), 32);
    assert_eq!(app.create_task("task-1", "dts-1").await.0, 201);
    app
}

#[tokio::test]
async fn an_independent_validator_accepts_the_served_document() {
    let app = seeded().await;
    let document = app.get("/openapi.json").await.text().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &document).unwrap();
    let mut validator = Command::new(tool("openapi-spec-validator"));
    validator.arg(&file);
    let (passed, said) = run(validator).await;
    assert!(
        passed,
        "openapi-spec-validator refuses the document: {said}"
    );
    assert!(said.contains("OK"), "{said}");
}

#[tokio::test]
async fn schemathesis_finds_nothing_as_the_admin_or_as_a_reporter() {
    let app = seeded().await;
    for (who, token) in [("admin", ADMIN_TOKEN), ("reporter", REPORTER_TOKEN)] {
        let mut schemathesis = Command::new(tool("st"));
        schemathesis
            .arg("--config-file")
            .arg(repository("tests/contract/schemathesis.toml"))
            .args(["run", &format!("{}/openapi.json", app.address)])
            .args(["--checks", "all"])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .env("NO_COLOR", "1");
        let (passed, said) = run(schemathesis).await;
        let summary = said.lines().last().unwrap_or_default().to_owned();
        println!("schemathesis as the {who}: {summary}");
        assert!(passed, "schemathesis as the {who}:\n{said}");
    }
}

#[tokio::test]
async fn the_documents_examples_are_what_the_service_answers() {
    let app = seeded().await;
    let document: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    let example = &document["components"]["schemas"]["AppInfo"]["examples"][0];
    let reply: serde_json::Value = app
        .callback(&[
            ("action", "createInstance"),
            ("jdPin", "jd_user"),
            ("orderBizId", "dts-1"),
            ("orderId", "order-dts-1"),
            ("serviceCode", "dts"),
            ("skuId", SMALL_SKU),
        ])
        .await
        .json()
        .await
        .unwrap();
    for field in ["frontEndUrl", "adminUrl", "authUrl"] {
        assert_eq!(
            example[field], reply["appInfo"][field],
            "the example's {field} is the URL the service gives (public_url https://dts.example.com)"
        );
    }
    // Byte counts are integers everywhere but in the marketplace's `info`, which says why.
    let info = &document["components"]["schemas"]["PackageInfo"]["properties"]["bytesGranted"];
    assert!(
        info["description"]
            .as_str()
            .unwrap()
            .contains("decimal string"),
        "{info}"
    );
    for (name, schema) in document["components"]["schemas"].as_object().unwrap() {
        for (property, field) in schema["properties"].as_object().into_iter().flatten() {
            if property.starts_with("bytes") && name != "PackageInfo" {
                let types = field["type"].to_string();
                assert!(types.contains("integer"), "{name}.{property} is {types}");
            }
        }
    }
}
