//! The test harness: one throwaway PostgreSQL cluster per test binary (or the server named by
//! `DATABASE_URL`), a fresh database per test, and the real HTTP server on a random port.

use dts_ledger::configuration::{Catalog, Config, Secret};
use dts_ledger::database::embedded::{Durability, EmbeddedPostgres};
use dts_ledger::database::{build_pool, migrate};
use dts_ledger::startup::{Application, ServerOptions};
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};
use tokio_postgres::NoTls;

pub const MARKETPLACE_KEY: &str = "test-isv-key";

/// The server tests create their databases on, as connection settings of its admin database.
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
    })
}

async fn connect(config: &tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, connection) = config.connect(NoTls).await.expect("connects to PostgreSQL");
    tokio::spawn(connection);
    client
}

/// A database of its own for one test, dropped when the test ends.
pub struct TestDb {
    pub name: String,
    pub config: tokio_postgres::Config,
    pub pool: deadpool_postgres::Pool,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let admin = server().clone();
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        connect(&admin)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("creates the test database");
        let mut config = admin;
        config.dbname(&name);
        migrate::migrate(&mut connect(&config).await)
            .await
            .expect("migrates the test database");
        let pool = build_pool(config.clone(), 8);
        TestDb { name, config, pool }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.config).await
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

/// Product settings for tests: a known marketplace key and the built-in catalog.
pub fn test_config() -> Config {
    Config {
        marketplace_key: Some(Secret::new(MARKETPLACE_KEY)),
        catalog: Catalog::built_in(),
        catalog_is_built_in: true,
        pool_size: 8,
    }
}

pub struct TestApp {
    pub address: String,
    pub db: TestDb,
    pub http: reqwest::Client,
    handle: actix_web::dev::ServerHandle,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(test_config()).await
}

pub async fn spawn_app_with(config: Config) -> TestApp {
    let db = TestDb::create().await;
    let pool = db.pool.clone();
    spawn_app_on(db, pool, config)
}

/// The real HTTP server on a random port, using `pool` (which may point elsewhere than `db`).
pub fn spawn_app_on(db: TestDb, pool: deadpool_postgres::Pool, config: Config) -> TestApp {
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
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        db,
        http: reqwest::Client::new(),
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
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Tell the workers to go; the returned future only reports completion.
        drop(self.handle.stop(false));
    }
}
