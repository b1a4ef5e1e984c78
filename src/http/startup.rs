//! Builds the HTTP application: state, routes, limits, error shapes.

use crate::configuration::Config;
use crate::credentials::Credentials;
use crate::domain::traffic::Rules;
use crate::http::error::{error_body, ApiError};
use crate::http::request_log::RequestSpan;
use crate::http::routes;
use crate::http::state::AppState;
use crate::ingest::Ingest;
use crate::ledger::{self, Ledger};
use crate::outbox;
use crate::store::Metadata;
use crate::supervisor::{Ended, Supervisor};
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use deadpool_postgres::Pool;
use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;
use tracing_actix_web::TracingLogger;

/// How long in-flight requests may take to finish after a stop signal before they are cut.
const SHUTDOWN_GRACE_S: u64 = 30;

/// The supervised worker names of the expiry sweeper, the webhook dispatcher, the stall reaper and
/// the checkpointer (ingest lanes are `ingest-lane-<n>`).
pub const EXPIRY_SWEEPER: &str = "expiry-sweeper";
pub const RUNWAY_CHECKER: &str = "runway-checker";
pub const WEBHOOK_DISPATCHER: &str = "webhook-dispatcher";
pub const STALL_REAPER: &str = "stall-reaper";
pub const CHECKPOINTER: &str = "checkpointer";
/// The worker making the ledger's monthly partitions ahead and removing expired traffic keys
/// (see [`crate::store::partitions::maintain`]).
pub const LEDGER_MAINTENANCE: &str = "ledger-maintenance";
/// The worker refreshing the gauges counted in the database (see [`crate::metrics::refresh`]).
pub const METRICS_REFRESHER: &str = "metrics-refresher";
/// How often a process looks for peers' sessions stalled mid-statement: a lane that meets one
/// ends it at once, this catches those that block only the control-plane routes, within a second
/// of [`crate::database::STALLED_AFTER_MS`]. One look at `pg_stat_activity` costs microseconds.
const STALL_CHECK_INTERVAL: Duration = Duration::from_secs(1);

pub struct Application {
    port: u16,
    server: Server,
    /// Background work (lanes, sweeper, dispatcher); stopped once the HTTP server has stopped.
    workers: Vec<tokio::task::JoinHandle<()>>,
    supervisor: Arc<Supervisor>,
}

/// Options of one HTTP server.
pub struct ServerOptions {
    pub listener: TcpListener,
    /// Worker threads; `None` picks one per core.
    pub workers: Option<usize>,
    /// React to SIGINT/SIGTERM with a graceful stop (off for servers embedded in tests).
    pub handle_signals: bool,
}

impl Application {
    pub fn build(
        options: ServerOptions,
        pool: Pool,
        config: Config,
    ) -> std::io::Result<Application> {
        let local = options.listener.local_addr()?;
        let ledger = Ledger::new(pool.clone(), &config);
        // Before any worker or request records a series.
        crate::metrics::install();
        let supervisor = Supervisor::new();
        let (ingest, workers) = start_workers(&supervisor, &ledger, &pool, &config);
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{local}"));
        let credentials = Credentials::from_config(&config);
        let state = web::Data::new(AppState {
            ledger,
            ingest,
            pool,
            config: Arc::new(config),
            credentials,
            public_url,
            supervisor: supervisor.clone(),
        });
        Ok(Application {
            port: local.port(),
            server: serve(options, state)?,
            workers,
            supervisor,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The supervisor of the background workers.
    pub fn supervisor(&self) -> Arc<Supervisor> {
        self.supervisor.clone()
    }

    /// A handle that can stop the server gracefully.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until a stop signal (or [`Self::handle`]`.stop`) and the in-flight requests finish.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        for worker in &self.workers {
            worker.abort();
        }
        served
    }
}

/// Starts the background work: the ingest lanes, the expiry sweeper, the stall reaper, the
/// metrics refresher, the webhook dispatcher and the checkpointer when configured. Every worker
/// runs under the supervisor: one that dies is reported by `/readyz` and started again.
fn start_workers(
    supervisor: &Arc<Supervisor>,
    ledger: &Ledger,
    pool: &Pool,
    config: &Config,
) -> (Arc<Ingest>, Vec<tokio::task::JoinHandle<()>>) {
    let rules = Rules {
        low_balance_percents: config.low_balance_percents.clone(),
    };
    let (ingest, mut workers) = Ingest::start(ledger.clone(), rules, config.pipelines, supervisor);
    let sweep_every = Duration::from_secs(config.expiry_sweep_s);
    let sweeper_ledger = ledger.clone();
    workers.push(supervisor.spawn(EXPIRY_SWEEPER, move || {
        let ledger = sweeper_ledger.clone();
        async move {
            sweep_expired_orders(ledger, sweep_every).await;
            Ended::Returned
        }
    }));
    let check_every = Duration::from_secs(config.runway_check_s);
    let (checker_ledger, thresholds) = (ledger.clone(), config.runway_thresholds_days.clone());
    workers.push(supervisor.spawn(RUNWAY_CHECKER, move || {
        let (ledger, thresholds) = (checker_ledger.clone(), thresholds.clone());
        async move {
            check_runways(ledger, thresholds, check_every).await;
            Ended::Returned
        }
    }));
    let reaper_pool = pool.clone();
    workers.push(supervisor.spawn(STALL_REAPER, move || {
        let pool = reaper_pool.clone();
        async move {
            reap_stalled_peers_forever(pool).await;
            Ended::Returned
        }
    }));
    let refresher_pool = pool.clone();
    let stopped_reporting_s = config.stopped_reporting_s;
    let actions = crate::marketplace::params::Action::ALL.map(|action| action.name());
    workers.push(supervisor.spawn(METRICS_REFRESHER, move || {
        let pool = refresher_pool.clone();
        async move {
            crate::metrics::refresh::refresh_forever(pool, stopped_reporting_s, &actions).await;
            Ended::Returned
        }
    }));
    let (maintenance_pool, retention) = (pool.clone(), config.key_retention());
    workers.push(supervisor.spawn(LEDGER_MAINTENANCE, move || {
        let pool = maintenance_pool.clone();
        async move {
            crate::store::partitions::maintain_forever(pool, retention).await;
            Ended::Returned
        }
    }));
    if let Some(webhook) = config.webhook.clone() {
        let pool = pool.clone();
        workers.push(supervisor.spawn(WEBHOOK_DISPATCHER, move || {
            let (pool, webhook) = (pool.clone(), webhook.clone());
            async move {
                outbox::dispatch(pool, webhook).await;
                Ended::Returned
            }
        }));
    }
    if config.audit.signing_key_file.is_some() {
        let (pool, config) = (pool.clone(), config.clone());
        workers.push(supervisor.spawn(CHECKPOINTER, move || {
            let checkpointer = crate::audit::checkpoint::worker(&pool, &config);
            async move {
                if let Some(checkpointer) = checkpointer {
                    checkpointer.await;
                }
                Ended::Returned
            }
        }));
    }
    (ingest, workers)
}

/// The HTTP server over `state`, listening and running but not yet awaited.
fn serve(options: ServerOptions, state: web::Data<AppState>) -> std::io::Result<Server> {
    // `[metrics] listen` is a second listener of the same server: it starts and stops with it,
    // and a middleware keeps it to `/metrics`.
    let metrics_listener = state
        .config
        .metrics_listen
        .map(TcpListener::bind)
        .transpose()?;
    let metrics_address = routes::metrics::MetricsAddress(
        metrics_listener
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()?,
    );
    // One console for the process: its workers share the sign-ins' share of the pool.
    let console = crate::http::console::state(&state);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(metrics_address)
            .app_data(path_config())
            // The last wrapped runs first: the logger's span and request id, the metrics
            // address's fence, the metrics, the `x-request-id` header, the headers HTTP asks
            // of every answer, then the bound on the request's time.
            .wrap(from_fn(crate::http::protocol::bound_request_time))
            .wrap(from_fn(crate::http::protocol::every_answer))
            .wrap(from_fn(crate::http::request_log::request_id_header))
            .wrap(from_fn(crate::http::request_metrics::record))
            .wrap(from_fn(routes::metrics::metrics_address_only))
            .wrap(TracingLogger::<RequestSpan>::new())
            .configure(api_routes)
            .service(crate::http::console::scope(console.clone()))
            .default_service(web::to(not_found))
    })
    .shutdown_timeout(SHUTDOWN_GRACE_S)
    .listen(options.listener)?;
    if let Some(listener) = metrics_listener {
        server = server.listen(listener)?;
    }
    if let Some(workers) = options.workers {
        server = server.workers(workers);
    }
    if !options.handle_signals {
        server = server.disable_signals();
    }
    Ok(server.run())
}

/// The JSON API's routes, with the landing page and the API's document and reference page.
fn api_routes(config: &mut web::ServiceConfig) {
    register_api_routes(config);
}

routes::route_table! {
    /// The hot path first, since routes are matched in order.
    fn register_api_routes(config: &mut web::ServiceConfig), under "", listed in API_ROUTES,
        other methods crate::http::protocol::method_not_allowed;
    POST "/v1/traffic" => routes::traffic::post_traffic;
    GET "/healthz" => routes::health::healthz;
    GET "/readyz" => routes::health::readyz;
    GET "/metrics" => routes::metrics::metrics;
    GET "/v1/cloud/order" => routes::cloud_order::cloud_order;
    GET "/v1/orders/{instance_id}" => routes::orders::get_order;
    GET "/v1/orders/{instance_id}/usage" => routes::orders::get_usage;
    DELETE "/v1/orders/{instance_id}/details" => routes::orders::erase_details;
    POST "/v1/orders/{instance_id}/expire" => routes::reconciliation::expire_order;
    POST "/v1/orders/{instance_id}/credential" => routes::orders::rotate_credential;
    GET "/v1/expiry-notices" => routes::reconciliation::list_held_notices;
    GET "/v1/marketplace/refused" => routes::reconciliation::list_refused;
    GET "/v1/ledger" => routes::ledger::read_ledger;
    GET "/v1/outbox" => routes::outbox::list_outbox;
    POST "/v1/outbox/{position}/retry" => routes::outbox::retry_outbox_entry;
    POST "/v1/tasks" => routes::tasks::create_task;
    GET "/v1/tasks/{task_id}" => routes::tasks::get_task;
    DELETE "/v1/tasks/{task_id}" => routes::tasks::destroy_task;
    POST "/v1/tasks/{task_id}/renew" => routes::tasks::renew_task;
    GET "/" => routes::landing::landing;
    GET "/openapi.json" => routes::openapi::document;
    GET "/docs" => routes::openapi::reference_page_moved;
    GET "/docs/{file:.*}" => routes::openapi::reference_page;
}

fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(bad_request("invalid_path"))
}

/// Answers an extractor's error in the API's error shape, under `code`.
fn bad_request<E>(code: &'static str) -> impl Fn(E, &HttpRequest) -> actix_web::Error
where
    E: std::fmt::Debug + std::fmt::Display + 'static,
{
    move |error, _req| {
        let api = ApiError::bad_request(code, error.to_string());
        actix_web::error::InternalError::from_response(
            error,
            HttpResponse::build(api.status).json(api.body()),
        )
        .into()
    }
}

/// Ends peers' sessions stalled in the middle of a statement (see
/// [`crate::database::reap_stalled_peers`]), every [`STALL_CHECK_INTERVAL`].
async fn reap_stalled_peers_forever(pool: Pool) {
    let mut ticker = tokio::time::interval(STALL_CHECK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(error) = crate::database::reap_stalled_peers(&pool).await {
            tracing::debug!(%error, "looking for stalled sessions failed; the next look retries");
        }
    }
}

/// Records the expiry of orders whose `expiresAt` has passed, every `every`.
async fn sweep_expired_orders(ledger: Ledger, every: Duration) {
    let (rounds, ledger) = (crate::metrics::EXPIRY_SWEEPS, &ledger);
    on_the_clock(every, rounds, "expiry sweep", move || async move {
        let expired = ledger::orders::expire_due(ledger, &by_the_clock("sweeper")).await?;
        metrics::counter!(crate::metrics::PACKAGES_EXPIRED).increment(expired as u64);
        Ok::<(), ledger::CommandError>(())
    })
    .await
}

/// Records the runway thresholds packages have newly reached, every `every`.
async fn check_runways(ledger: Ledger, thresholds_days: Vec<u32>, every: Duration) {
    let (rounds, ledger, thresholds_days) =
        (crate::metrics::RUNWAY_CHECKS, &ledger, &thresholds_days);
    on_the_clock(every, rounds, "runway check", move || async move {
        let now = crate::store::truncate_to_micros(chrono::Utc::now());
        let metadata = by_the_clock("runway-check");
        let announced = ledger::runway::check(ledger, thresholds_days, &metadata, now).await?;
        metrics::counter!(crate::metrics::RUNWAYS_ANNOUNCED).increment(announced as u64);
        Ok::<(), ledger::LedgerError>(())
    })
    .await
}

/// What a worker of the clock records its changes as: each round a request of its own, from
/// `source`.
fn by_the_clock(source: &'static str) -> Metadata {
    Metadata {
        request_id: uuid::Uuid::new_v4().to_string(),
        source,
        actor: "clock".to_owned(),
    }
}

/// Runs `round` every `every`, for ever, counting each round in the `rounds` counter by its
/// result; a failed `what` is logged, and the next round retries.
async fn on_the_clock<E: std::fmt::Display, Round: Future<Output = Result<(), E>>>(
    every: Duration,
    rounds: &'static str,
    what: &str,
    mut round: impl FnMut() -> Round,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let result = match round().await {
            Ok(()) => "ok",
            Err(error) => {
                tracing::warn!(%error, "{what} failed; the next one retries");
                "failed"
            }
        };
        metrics::counter!(rounds, "result" => result).increment(1);
    }
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(error_body("not_found", "no such route"))
}
