// Over 600 lines: the one harness every API test builds on (cluster, app, client, fixtures).
//! The test harness: one throwaway PostgreSQL cluster per test binary (or the server named by
//! `DATABASE_URL`), a fresh database per test, and the real HTTP server on a random port.
//!
//! Least privilege throughout: each test database is owned and migrated by the owner role, the
//! app's pool connects as the service role, and the audit commands run as the reader, as the
//! operating guide (docs/operating.md) asks of a deployment. Only tests that tamper with the ledger
//! on purpose (an insider with the superuser) use [`TestDb::client`].

use dts_ledger::configuration::{Catalog, Config, Secret, Sku};
use dts_ledger::database::embedded::{Durability, EmbeddedPostgres};
use dts_ledger::database::{build_pool, migrate, roles, Role};
use dts_ledger::http::startup::{Application, ServerOptions};
use projections::ids::{Bytes, SkuId};
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};
use tokio_postgres::NoTls;

pub const MARKETPLACE_KEY: &str = "test-isv-key";
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const REPORTER_TOKEN: &str = "test-reporter-token-0123456789";
/// A small SKU, so that tests can empty a package with a few reports.
pub const SMALL_SKU: &str = "DTS-TEST-10KB";
pub const SMALL_SKU_BYTES: i64 = 10_000;

/// The ledger's roles log in with this on a `DATABASE_URL` server (the embedded cluster trusts
/// its private socket and ignores it).
pub const TEST_ROLE_PASSWORD: &str = "dts-ledger-test-role";

/// The server tests create their databases on, as connection settings of its admin database
/// (a superuser: it creates the roles, the databases, and tampers on purpose).
static SERVER: OnceLock<tokio_postgres::Config> = OnceLock::new();
/// The embedded cluster, taken and stopped when the test binary exits.
static CLUSTER: Mutex<Option<(EmbeddedPostgres, tempfile::TempDir)>> = Mutex::new(None);

extern "C" fn stop_cluster() {
    if let Ok(mut slot) = CLUSTER.lock() {
        // Dropping stops the cluster, then removes its directory.
        drop(slot.take());
    }
}

fn server() -> &'static tokio_postgres::Config {
    SERVER.get_or_init(|| {
        let config = start_server();
        // Roles belong to the whole server while every test has a database of its own: create
        // them once here; the grants live in each database. The caller's runtime cannot be
        // blocked on: use a thread.
        let admin = config.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let client = connect(&admin).await;
                roles::create_login_roles(&client, Some(TEST_ROLE_PASSWORD))
                    .await
                    .expect("creates the ledger's roles");
            })
        })
        .join()
        .expect("the roles are created");
        config
    })
}

fn start_server() -> tokio_postgres::Config {
    {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            return tokio_postgres::Config::from_str(&url).expect("DATABASE_URL is valid");
        }
        let dir = tempfile::Builder::new()
            .prefix("dts-ledger-test-")
            .tempdir()
            .expect("a temporary directory");
        // The cluster may run as `postgres`, which must be able to enter the directory.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let cluster = EmbeddedPostgres::start(&dir.path().join("cluster"), Durability::Throwaway)
            .expect("the test PostgreSQL cluster starts");
        let config = cluster.config("postgres");
        *CLUSTER.lock().unwrap() = Some((cluster, dir));
        // SAFETY: registering a plain function to run at process exit.
        unsafe { libc::atexit(stop_cluster) };
        config
    }
}

async fn connect(config: &tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, connection) = config.connect(NoTls).await.expect("connects to PostgreSQL");
    tokio::spawn(connection);
    client
}

/// A database of its own for one test, dropped when the test ends.
pub struct TestDb {
    pub name: String,
    /// As the server's superuser.
    pub config: tokio_postgres::Config,
    /// As the service role, like `serve`.
    pub pool: deadpool_postgres::Pool,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let db = TestDb::create_unmigrated().await;
        migrate::migrate(&mut db.client_as(Role::Owner).await)
            .await
            .expect("migrates the test database as its owner");
        db
    }

    /// An empty database owned by the owner role, as a DBA would hand it over.
    pub async fn create_unmigrated() -> TestDb {
        let admin = server().clone();
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        connect(&admin)
            .await
            .batch_execute(&format!("CREATE DATABASE {name} OWNER {}", roles::OWNER))
            .await
            .expect("creates the test database");
        let mut config = admin;
        config.dbname(&name);
        let mut service = config.clone();
        service
            .user(Role::Service.name())
            .password(TEST_ROLE_PASSWORD);
        TestDb {
            pool: build_pool(service, 8),
            name,
            config,
        }
    }

    /// As the server's superuser: for tests that play an insider tampering with the ledger.
    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.config).await
    }

    /// Moves the recorded time of the events `rows` selects (an SQL condition) back by
    /// `interval`, as if they had been recorded then: the server's clock cannot be set back. As the
    /// superuser with every trigger off for the statement (the ledger's partitions refuse an
    /// UPDATE each), after making the months the rows move into. `then` runs in the same batch.
    pub async fn move_events_back(&self, interval: &str, rows: &str, then: &str) {
        self.client()
            .await
            .batch_execute(&format!(
                "SET ROLE dts_ledger_owner;
                 SELECT ledger_make_partition('events', m) FROM (
                     SELECT DISTINCT ledger_month_start(day) AS m
                       FROM generate_series(
                                (SELECT min(recorded_at) FROM events) - interval '{interval}',
                                now(), interval '1 day') AS day) AS months;
                 RESET ROLE;
                 SET session_replication_role = replica;
                 UPDATE events SET recorded_at = recorded_at - interval '{interval}'
                  WHERE {rows};
                 RESET session_replication_role;
                 {then}"
            ))
            .await
            .unwrap();
    }

    /// As one of the ledger's roles.
    pub async fn client_as(&self, role: Role) -> tokio_postgres::Client {
        connect(&self.config_as(role)).await
    }

    pub fn config_as(&self, role: Role) -> tokio_postgres::Config {
        let mut config = self.config.clone();
        config.user(role.name()).password(TEST_ROLE_PASSWORD);
        config
    }

    /// This database as a `DATABASE_URL` (key-value form) for the service role, for running
    /// `serve` against it.
    pub fn url(&self) -> String {
        self.url_as(Role::Service)
    }

    /// This database as a `DATABASE_URL` (key-value form) for `role`.
    pub fn url_as(&self, role: Role) -> String {
        let config = self.config_as(role);
        let mut parts = Vec::new();
        if let Some(host) = config.get_hosts().first() {
            match host {
                tokio_postgres::config::Host::Unix(path) => {
                    parts.push(format!("host={}", path.display()))
                }
                tokio_postgres::config::Host::Tcp(name) => parts.push(format!("host={name}")),
            }
        }
        if let Some(port) = config.get_ports().first() {
            parts.push(format!("port={port}"));
        }
        if let Some(user) = config.get_user() {
            parts.push(format!("user={user}"));
        }
        if let Some(password) = config.get_password() {
            parts.push(format!("password='{}'", String::from_utf8_lossy(password)));
        }
        parts.push(format!("dbname={}", self.name));
        parts.join(" ")
    }

    /// Runs `dts-ledger <args>` against this database with the least role the command needs
    /// (the operating guide's advice): exit code, stdout, stderr.
    pub fn run_cli(&self, args: &[&str]) -> (i32, String, String) {
        self.run_cli_as(cli_role(args), args)
    }

    /// Runs `dts-ledger <args>` against this database as `role`: exit code, stdout, stderr.
    pub fn run_cli_as(&self, role: Role, args: &[&str]) -> (i32, String, String) {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_dts-ledger"))
            .args(args)
            .env("DATABASE_URL", self.url_as(role))
            .env_remove("LEDGER_MIGRATE_DATABASE_URL")
            .env_remove("LEDGER_CONFIG")
            .env("RUST_LOG", "warn")
            .output()
            .expect("the binary runs");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

/// Runs `dts-ledger <args>` with only `env` for its database settings: exit code, stdout,
/// stderr.
pub fn run_binary(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_dts-ledger"));
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("LEDGER_MIGRATE_DATABASE_URL")
        .env_remove("LEDGER_CONFIG")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied());
    let output = command.output().expect("the binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The role a command runs as in a deployment: the audits read only (a scratch schema needs the
/// owner's CREATE), `migrate` is the owner's, everything else is the service's.
pub fn cli_role(args: &[&str]) -> Role {
    match args.first().copied() {
        Some("replay") if args.contains(&"--scratch-schema") => Role::Owner,
        Some("verify" | "replay" | "export" | "report" | "stats") => Role::Reader,
        Some("migrate" | "migrate-partitions") => Role::Owner,
        _ => Role::Service,
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        self.pool.close();
        let name = self.name.clone();
        let admin = server().clone();
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok((client, connection)) = admin.connect(NoTls).await {
                    tokio::spawn(connection);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// Product settings for tests: known secrets and the built-in catalog.
pub fn test_config() -> Config {
    let mut skus: Vec<Sku> = Catalog::built_in().iter().cloned().collect();
    skus.push(Sku {
        id: SkuId::parse(SMALL_SKU).unwrap(),
        name: "DTS 10KB".into(),
        bytes: Bytes::new(SMALL_SKU_BYTES as u64).unwrap(),
        price: "10.00".parse().unwrap(),
        currency: "CNY".into(),
    });
    Config {
        marketplace_key: Some(Secret::new(MARKETPLACE_KEY)),
        admin_token: Some(Secret::new(ADMIN_TOKEN)),
        reporter_tokens: vec![Secret::new(REPORTER_TOKEN)],
        public_url: Some("https://dts.example.com".into()),
        catalog: Catalog::new(skus).unwrap(),
        catalog_is_built_in: false,
        pool_size: 8,
        ..Config::defaults()
    }
}

/// The query string the marketplace would send: parameters form-encoded, plus the token computed
/// by the rule of DESIGN §3 (written out again here, independently of the service's code).
pub fn signed_query(params: &[(&str, &str)], key: &str) -> String {
    use md5::{Digest, Md5};
    let mut sorted = params.to_vec();
    sorted.sort();
    let input: Vec<String> = sorted.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let token = hex::encode(Md5::digest(format!("{}&key={key}", input.join("&"))));
    let mut encoded: Vec<String> = params
        .iter()
        .map(|(n, v)| format!("{n}={}", form_encode(v)))
        .collect();
    encoded.push(format!("token={token}"));
    encoded.join("&")
}

/// `application/x-www-form-urlencoded`: spaces as `+`, everything else unreserved or `%XX`.
pub fn form_encode(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        match byte {
            b' ' => out.push('+'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// A traffic report ending now.
pub fn report(task_id: &str, report_id: &str, bytes: i64) -> serde_json::Value {
    serde_json::json!({
        "taskId": task_id,
        "reportId": report_id,
        "bytes": bytes,
        "periodEnd": chrono::Utc::now().to_rfc3339(),
    })
}

/// A time in the marketplace's format (China Standard Time).
pub fn cst(at: chrono::DateTime<chrono::Utc>) -> String {
    at.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

pub struct TestApp {
    pub address: String,
    pub db: std::sync::Arc<TestDb>,
    pub http: reqwest::Client,
    /// The background workers of this server, for tests of supervision.
    pub supervisor: std::sync::Arc<dts_ledger::supervisor::Supervisor>,
    handle: actix_web::dev::ServerHandle,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(test_config()).await
}

pub async fn spawn_app_with(config: Config) -> TestApp {
    let db = std::sync::Arc::new(TestDb::create().await);
    let pool = db.pool.clone();
    spawn_app_on(db, pool, config)
}

/// The real HTTP server on a random port, using `pool` (which may point elsewhere than `db`).
pub fn spawn_app_on(
    db: std::sync::Arc<TestDb>,
    pool: deadpool_postgres::Pool,
    config: Config,
) -> TestApp {
    // `TEST_LOG=1 cargo test` shows the service's logs.
    if std::env::var_os("TEST_LOG").is_some() {
        dts_ledger::telemetry::init(dts_ledger::telemetry::LogFormat::Human);
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let app = Application::build(
        ServerOptions {
            listener,
            workers: Some(1),
            handle_signals: false,
        },
        pool,
        config,
    )
    .expect("the application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    let supervisor = app.supervisor();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        db,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        supervisor,
        handle,
    }
}

impl TestApp {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{}", self.address, path))
            .send()
            .await
            .expect("the request is sent")
    }

    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }

    /// Another server on the same database, with other settings (a second `serve` process).
    pub fn sibling(&self, config: Config) -> TestApp {
        spawn_app_on(self.db.clone(), self.db.pool.clone(), config)
    }

    /// Another server on the same database whose pool points at no database at all.
    pub fn sibling_without_database(&self) -> TestApp {
        let mut unreachable = tokio_postgres::Config::new();
        unreachable
            .host_path("/nonexistent-socket-dir")
            .port(5432)
            .user("postgres")
            .dbname("ledger");
        spawn_app_on(
            self.db.clone(),
            dts_ledger::database::build_pool(unreachable, 1),
            test_config(),
        )
    }

    /// A marketplace callback signed with the test key.
    pub async fn callback(&self, params: &[(&str, &str)]) -> reqwest::Response {
        self.callback_raw(&signed_query(params, MARKETPLACE_KEY))
            .await
    }

    pub async fn callback_raw(&self, query: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/v1/cloud/order?{query}", self.address))
            .send()
            .await
            .expect("the request is sent")
    }

    pub async fn get_as(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{}", self.address, path))
            .bearer_auth(token)
            .send()
            .await
            .expect("the request is sent")
    }

    /// `GET /v1/orders/{id}` as admin, as JSON.
    pub async fn order(&self, instance_id: &str) -> serde_json::Value {
        let response = self
            .get_as(&format!("/v1/orders/{instance_id}"), ADMIN_TOKEN)
            .await;
        assert_eq!(response.status(), 200, "order {instance_id}");
        shaped::<dts_ledger::http::api::orders::OrderResponse>(response.json().await.unwrap())
    }

    /// Every event in the ledger, through the admin API.
    pub async fn events(&self) -> Vec<serde_json::Value> {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let page: serde_json::Value = self
                .get_as(&format!("/v1/ledger?after={after}&limit=1000"), ADMIN_TOKEN)
                .await
                .json()
                .await
                .unwrap();
            all.extend(page["events"].as_array().unwrap().iter().cloned());
            match page["next"].as_i64() {
                Some(next) => after = next,
                None => return all,
            }
        }
    }

    pub async fn post_as(
        &self,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.http
            .post(format!("{}{}", self.address, path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("the request is sent")
    }

    /// Buys a package of `sku` for `jd_pin` through the marketplace callback.
    pub async fn buy(&self, instance_id: &str, jd_pin: &str, sku: &str) {
        let response = self
            .callback(&[
                ("action", "createInstance"),
                ("jdPin", jd_pin),
                ("orderBizId", instance_id),
                ("orderId", &format!("order-{instance_id}")),
                ("serviceCode", "dts"),
                ("skuId", sku),
            ])
            .await;
        assert_eq!(response.status(), 200, "buy {instance_id}");
    }

    /// Creates a task on a package; returns the answer's status and body.
    pub async fn create_task(&self, task_id: &str, instance_id: &str) -> (u16, serde_json::Value) {
        let response = self
            .post_as(
                "/v1/tasks",
                REPORTER_TOKEN,
                &serde_json::json!({"taskId": task_id, "instanceId": instance_id}),
            )
            .await;
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// `GET /v1/tasks/{id}` as a reporter.
    pub async fn task(&self, task_id: &str) -> serde_json::Value {
        let response = self
            .get_as(&format!("/v1/tasks/{task_id}"), REPORTER_TOKEN)
            .await;
        assert_eq!(response.status(), 200, "task {task_id}");
        shaped::<dts_ledger::http::api::orders::TaskResponse>(response.json().await.unwrap())
    }

    /// Sends traffic reports; returns the per-report results.
    pub async fn traffic(&self, reports: serde_json::Value) -> Vec<serde_json::Value> {
        let response = self
            .post_as(
                "/v1/traffic",
                REPORTER_TOKEN,
                &serde_json::json!({ "reports": reports }),
            )
            .await;
        assert_eq!(response.status(), 200);
        let body = shaped::<dts_ledger::http::api::traffic::TrafficResponse>(
            response.json().await.unwrap(),
        );
        body["results"].as_array().unwrap().clone()
    }

    /// One report of `bytes` for `task_id`, ending now.
    pub async fn report(&self, task_id: &str, report_id: &str, bytes: i64) -> serde_json::Value {
        self.traffic(serde_json::json!([report(task_id, report_id, bytes)]))
            .await
            .remove(0)
    }

    /// The events of one type.
    pub async fn events_of(&self, event_type: &str) -> Vec<serde_json::Value> {
        self.events()
            .await
            .into_iter()
            .filter(|e| e["type"] == event_type)
            .collect()
    }
}

/// The `name=value…` `Set-Cookie` line of the cookie `name` in a response, if it sets one.
pub fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// The `name=value` of a `Set-Cookie` line, as a `Cookie` header sends it back.
pub fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

/// The value of the form field `name` in a page.
pub fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// What the console's sign-in form hands a browser: the `Cookie` header of its pre-session cookie
/// and the CSRF token its form carries.
#[derive(Debug, Clone)]
pub struct LoginForm {
    pub cookie: String,
    pub csrf: String,
}

impl TestApp {
    /// A client whose connections come from `ip` (any address of 127.0.0.0/8 reaches the server
    /// on 127.0.0.1), so that tests can play several client addresses.
    pub fn client_from(&self, ip: &str) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .local_address(Some(ip.parse().expect("an IP address")))
            .build()
            .unwrap()
    }

    /// `GET /console/login` with `client`, as a browser opens the form.
    pub async fn login_form_with(&self, client: &reqwest::Client) -> LoginForm {
        let response = client
            .get(format!("{}/console/login", self.address))
            .send()
            .await
            .expect("the request is sent");
        assert_eq!(response.status(), 200);
        let cookie = cookie_pair(&set_cookie(&response, "dts_login").expect("a sign-in cookie"));
        let html = response.text().await.unwrap();
        LoginForm {
            cookie,
            csrf: field(&html, "csrf"),
        }
    }

    /// `POST /console/login` with `client`, from a form opened before.
    pub async fn login_with(
        &self,
        client: &reqwest::Client,
        form: &LoginForm,
        instance_id: &str,
        auth_code: &str,
    ) -> reqwest::Response {
        client
            .post(format!("{}/console/login", self.address))
            .header("cookie", &form.cookie)
            .form(&[
                ("csrf", form.csrf.as_str()),
                ("instanceId", instance_id),
                ("authCode", auth_code),
            ])
            .send()
            .await
            .expect("the request is sent")
    }

    /// Opens the sign-in form and signs in with an order credential, as a browser does.
    pub async fn login(&self, instance_id: &str, auth_code: &str) -> reqwest::Response {
        let form = self.login_form_with(&self.http).await;
        self.login_with(&self.http, &form, instance_id, auth_code)
            .await
    }

    /// Buys a package of the small SKU for `jd_pin`; returns its `authCode`.
    pub async fn buy_with_code(&self, instance_id: &str, jd_pin: &str) -> String {
        let response = self
            .callback(&[
                ("action", "createInstance"),
                ("jdPin", jd_pin),
                ("orderBizId", instance_id),
                ("orderId", &format!("order-{instance_id}")),
                ("serviceCode", "dts"),
                ("skuId", SMALL_SKU),
            ])
            .await;
        assert_eq!(response.status(), 200);
        let reply: serde_json::Value = response.json().await.unwrap();
        reply["appInfo"]["authCode"].as_str().unwrap().to_owned()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Tell the workers to go; the returned future only reports completion.
        drop(self.handle.stop(false));
    }
}

/// `body` as it is, after checking that it is exactly the service's response type `T` (the type
/// the handlers answer with): it parses into `T`, and `T` writes it back unchanged.
pub fn shaped<T>(body: serde_json::Value) -> serde_json::Value
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let typed: T = serde_json::from_value(body.clone()).unwrap_or_else(|e| {
        panic!(
            "the body is not a {}: {e}: {body}",
            std::any::type_name::<T>()
        )
    });
    assert_eq!(serde_json::to_value(&typed).unwrap(), body);
    body
}

/// Appends `events` in `tx` as the ledger's unit of work does (the stream heads read, then
/// positions taken and the rows written), without a command around them: for tests of the store
/// itself and for tests that plant events. The caller commits.
pub async fn append_events(
    tx: &deadpool_postgres::Transaction<'_>,
    events: Vec<dts_ledger::store::NewEvent>,
    recorded_at: chrono::DateTime<chrono::Utc>,
) -> Result<dts_ledger::store::Appended, dts_ledger::store::StoreError> {
    let prepared = dts_ledger::store::prepare(tx, events, recorded_at).await?;
    dts_ledger::store::write(tx, prepared).await
}

/// How many sessions of this test's database wait for a lock right now: the sign that a
/// statement under test has reached the lock another session holds.
pub async fn sessions_waiting_on_locks(client: &impl tokio_postgres::GenericClient) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// Rewrites the ledger in `db` as older binaries left it, as the superuser behind the triggers:
/// each event (in position order, numbered from 0) hashed with `version_of(n)`, storing what
/// rows of that version store (its idempotency key, its metadata, its ledger hash on every row
/// from version 2 on and none for version 1), with the ledger head and the stream heads moved to
/// the new chains. Payload and metadata texts are kept as stored; versions 1 and 2 hash them as
/// canonical JSON.
pub async fn rewrite_as_older(
    db: &TestDb,
    version_of: impl Fn(usize) -> dts_ledger::store::hash::HashVersion,
) {
    use dts_ledger::store::hash::{canonical, event_hash, ledger_hash, Hash, Hashed, GENESIS};
    let client = db.client().await;
    client
        .batch_execute("SET session_replication_role = replica")
        .await
        .unwrap();
    let events = {
        let pooled = db.pool.get().await.unwrap();
        dts_ledger::store::read_all_after(&pooled, 0, 1_000_000)
            .await
            .unwrap()
    };
    let texts: std::collections::HashMap<i64, String> = client
        .query("SELECT position, payload::text FROM events", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let mut heads: std::collections::HashMap<String, Hash> = Default::default();
    let mut chain = GENESIS;
    for (n, event) in events.iter().enumerate() {
        let version = version_of(n);
        let prev_hash = heads.get(&event.stream_id).copied().unwrap_or(GENESIS);
        let metadata = event
            .metadata
            .clone()
            .expect("the page reader resolves metadata");
        let key = event.answered_key(None);
        let (payload, metadata_text) = if version.covers_stored_text() {
            (
                texts[&event.position].as_bytes().to_vec(),
                dts_ledger::store::hash::canonical(&metadata),
            )
        } else {
            (canonical(&event.payload), canonical(&metadata))
        };
        let hash = event_hash(
            version,
            &prev_hash,
            &Hashed {
                position: event.position,
                stream_id: &event.stream_id,
                version: event.version,
                event_type: &event.event_type,
                event_version: event.event_version,
                recorded_at: event.recorded_at,
                payload: &payload,
                metadata: &metadata_text,
                idempotency_key: key.as_deref(),
            },
        );
        chain = ledger_hash(&chain, &hash);
        heads.insert(event.stream_id.clone(), hash);
        let stored_chain =
            (version >= dts_ledger::store::hash::HashVersion::V2).then(|| chain.to_vec());
        client
            .execute(
                "UPDATE events SET prev_hash = $2, hash = $3, hash_version = $4, ledger_hash = $5,
                        idempotency_key = $6, metadata = $7::text::json
                  WHERE position = $1",
                &[
                    &event.position,
                    &prev_hash.as_slice(),
                    &hash.as_slice(),
                    &version.column(),
                    &stored_chain,
                    &key,
                    &String::from_utf8(metadata_text).unwrap(),
                ],
            )
            .await
            .unwrap();
    }
    client
        .execute(
            "UPDATE ledger_head SET ledger_hash = $1",
            &[&chain.as_slice()],
        )
        .await
        .unwrap();
    for (stream, hash) in &heads {
        client
            .execute(
                "UPDATE stream_heads SET hash = $2 WHERE stream_id = $1",
                &[stream, &hash.as_slice()],
            )
            .await
            .unwrap();
    }
    client
        .batch_execute("SET session_replication_role = origin")
        .await
        .unwrap();
}
