//! Marketplace orders applied to the ledger, and the expiry sweeper.

use super::{Attempts, CommandError, Ledger, LedgerError, UnitOfWork};
use crate::configuration::Catalog;
use crate::domain::orders::{
    self as decide, create_key, order_key, CreateOrder, DilateOrder, Outcome, Refusal, RenewOrder,
    UpgradeOrder,
};
use crate::domain::Draft;
use crate::store::Metadata;
use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use projections::events::Event;
use projections::ids::{InstanceId, OrderId};

/// Customer details that come with an order. They are personal data or free-form, so they live in
/// the erasable `order_details` table, never in the immutable ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderDetails {
    pub mobile: Option<String>,
    pub email: Option<String>,
    pub extra_info: Option<String>,
    pub addition_info: Option<String>,
}

impl OrderDetails {
    fn is_empty(&self) -> bool {
        self == &OrderDetails::default()
    }
}

async fn save_details(
    tx: &Transaction<'_>,
    instance_id: &InstanceId,
    order_id: &OrderId,
    details: &OrderDetails,
    at: DateTime<Utc>,
) -> Result<(), tokio_postgres::Error> {
    if details.is_empty() {
        return Ok(());
    }
    let statement = tx
        .prepare_cached(
            "INSERT INTO order_details
                 (instance_id, order_id, mobile, email, extra_info, addition_info, recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (instance_id, order_id) DO NOTHING",
        )
        .await?;
    tx.execute(
        &statement,
        &[
            &instance_id.as_str(),
            &order_id.as_str(),
            &details.mobile,
            &details.email,
            &details.extra_info,
            &details.addition_info,
            &at,
        ],
    )
    .await
    .map(drop)
}

/// `createInstance`.
pub async fn create(
    ledger: &Ledger,
    catalog: &Catalog,
    command: &CreateOrder,
    details: &OrderDetails,
    metadata: &Metadata,
) -> Result<Outcome, CommandError> {
    let mut attempts = Attempts::default();
    loop {
        let mut client = ledger.pool.get().await?;
        let mut unit = UnitOfWork::begin(&mut client, ledger, metadata).await?;
        // Concurrent retries of one purchase queue here; the first records it, the others find it.
        unit.lock_for_creation(&command.instance_id).await?;
        unit.lock_packages(&[&command.instance_id]).await?;
        let earlier = unit
            .earlier_event(&create_key(&command.instance_id))
            .await?;
        let outcome = decide::create(&mut unit.draft, command, catalog, earlier)?;
        if let Outcome::Recorded(_) = outcome {
            let now = unit.draft.now;
            save_details(
                unit.tx(),
                &command.instance_id,
                &command.order_id,
                details,
                now,
            )
            .await?;
        }
        match unit.commit().await {
            Ok(_) => return Ok(outcome),
            Err(error) => attempts.retry(error)?,
        }
    }
}

/// What a change needs to know of the package's history, read under its lock.
enum Prior<'a> {
    Nothing,
    /// The answer recorded earlier for this order, if any; the order's details are kept.
    Order(&'a OrderId, &'a OrderDetails),
    /// Whether the package was renewed after the marketplace last expired it.
    RenewalAfterExpiry,
}

/// What a change's decision is given.
struct History {
    earlier: Option<Event>,
    renewed_since_expiry: bool,
}

/// A change to an existing package: locks it and its live tasks, reads what `prior` asks for,
/// decides, and keeps the order's details.
async fn change(
    ledger: &Ledger,
    metadata: &Metadata,
    instance_id: &InstanceId,
    prior: Prior<'_>,
    decide: impl Fn(&mut Draft, History) -> Result<Outcome, Refusal>,
) -> Result<Outcome, CommandError> {
    let mut attempts = Attempts::default();
    loop {
        let mut client = ledger.pool.get().await?;
        let mut unit = UnitOfWork::begin(&mut client, ledger, metadata).await?;
        unit.lock_packages(&[instance_id]).await?;
        unit.load_live_tasks_of(&[instance_id]).await?;
        let history = match prior {
            Prior::Nothing => History {
                earlier: None,
                renewed_since_expiry: false,
            },
            Prior::Order(order_id, _) => History {
                earlier: unit
                    .earlier_event(&order_key(instance_id, order_id))
                    .await?,
                renewed_since_expiry: false,
            },
            Prior::RenewalAfterExpiry => History {
                earlier: None,
                renewed_since_expiry: renewed_since_expiry(unit.tx(), instance_id).await?,
            },
        };
        let outcome = decide(&mut unit.draft, history)?;
        if let (Outcome::Recorded(_), Prior::Order(order_id, details)) = (&outcome, &prior) {
            let now = unit.draft.now;
            save_details(unit.tx(), instance_id, order_id, details, now).await?;
        }
        match unit.commit().await {
            Ok(_) => return Ok(outcome),
            Err(error) => attempts.retry(error)?,
        }
    }
}

/// Whether the package's stream holds a renewal after its last expiry by the marketplace.
async fn renewed_since_expiry(
    tx: &Transaction<'_>,
    instance_id: &InstanceId,
) -> Result<bool, tokio_postgres::Error> {
    let statement = tx
        .prepare_cached(
            "SELECT max(position) FILTER (WHERE event_type = 'OrderRenewed')
                  > max(position) FILTER (WHERE event_type = 'OrderExpired'
                                            AND payload->>'source' = 'marketplace')
               FROM events WHERE stream_id = $1",
        )
        .await?;
    let stream = projections::events::package_stream(instance_id);
    let row = tx.query_one(&statement, &[&stream]).await?;
    Ok(row.get::<_, Option<bool>>(0).unwrap_or(false))
}

pub async fn renew(
    ledger: &Ledger,
    catalog: &Catalog,
    command: &RenewOrder,
    metadata: &Metadata,
) -> Result<Outcome, CommandError> {
    let details = OrderDetails::default();
    change(
        ledger,
        metadata,
        &command.instance_id,
        Prior::Order(&command.order_id, &details),
        |draft, history| decide::renew(draft, command, catalog, history.earlier),
    )
    .await
}

pub async fn upgrade(
    ledger: &Ledger,
    catalog: &Catalog,
    command: &UpgradeOrder,
    details: &OrderDetails,
    metadata: &Metadata,
) -> Result<Outcome, CommandError> {
    change(
        ledger,
        metadata,
        &command.instance_id,
        Prior::Order(&command.order_id, details),
        |draft, history| decide::upgrade(draft, command, catalog, history.earlier),
    )
    .await
}

pub async fn dilate(
    ledger: &Ledger,
    catalog: &Catalog,
    command: &DilateOrder,
    details: &OrderDetails,
    metadata: &Metadata,
) -> Result<Outcome, CommandError> {
    change(
        ledger,
        metadata,
        &command.instance_id,
        Prior::Order(&command.order_id, details),
        |draft, history| decide::dilate(draft, command, catalog, history.earlier),
    )
    .await
}

pub async fn expire(
    ledger: &Ledger,
    instance_id: &InstanceId,
    metadata: &Metadata,
) -> Result<Outcome, CommandError> {
    change(
        ledger,
        metadata,
        instance_id,
        Prior::RenewalAfterExpiry,
        |draft, history| decide::expire(draft, instance_id, history.renewed_since_expiry),
    )
    .await
}

pub async fn release(
    ledger: &Ledger,
    instance_id: &InstanceId,
    metadata: &Metadata,
) -> Result<Outcome, CommandError> {
    change(ledger, metadata, instance_id, Prior::Nothing, |draft, _| {
        decide::release(draft, instance_id)
    })
    .await
}

/// Packages the sweeper expires per pass; the next pass takes the rest.
pub const SWEEP_BATCH_MAX: i64 = 500;

/// Records `OrderExpired` for active packages whose `expiresAt` has passed by our clock. Several
/// processes may sweep at once: each package is re-checked under its lock.
pub async fn expire_due(ledger: &Ledger, metadata: &Metadata) -> Result<usize, CommandError> {
    let due: Vec<InstanceId> = {
        let client = ledger.pool.get().await?;
        let statement = client
            .prepare_cached(
                "SELECT instance_id FROM packages
                  WHERE status = 'active' AND expires_at <= now()
                  ORDER BY expires_at LIMIT $1",
            )
            .await?;
        client
            .query(&statement, &[&SWEEP_BATCH_MAX])
            .await?
            .iter()
            .filter_map(|row| InstanceId::parse(row.get::<_, String>(0)).ok())
            .collect()
    };
    let mut expired = 0;
    for instance_id in &due {
        let mut attempts = Attempts::default();
        let done = loop {
            let mut client = ledger.pool.get().await?;
            let mut unit = UnitOfWork::begin(&mut client, ledger, metadata).await?;
            unit.lock_packages(&[instance_id]).await?;
            unit.load_live_tasks_of(&[instance_id]).await?;
            let done = unit
                .draft
                .expire_if_due(instance_id)
                .map_err(LedgerError::from)?;
            match unit.commit().await {
                Ok(_) => break done,
                Err(error) => attempts.retry(error)?,
            }
        };
        if done {
            tracing::info!(instance_id = %instance_id, "order expired by the clock");
            expired += 1;
        }
    }
    Ok(expired)
}
