//! Marketplace orders applied to the ledger, and the expiry sweeper.

use super::details::{save_details, OrderDetails};
use super::{Command, CommandError, Ledger, LedgerError, UnitOfWork};
use crate::configuration::{Catalog, Sku};
use crate::domain::orders::{
    self as decide, CreateOrder, DilateOrder, Outcome, Refusal, RenewOrder, UpgradeOrder,
};
use crate::domain::Draft;
use crate::store::{self, Metadata};
use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use projections::events::{package_stream, Event, ExpiryReason, PACKAGE_STREAM_PREFIX};
use projections::ids::{InstanceId, OrderRef};
use projections::keys::{create_key, expiry_held_key};

/// `createInstance`.
pub async fn create(
    ledger: &Ledger,
    catalog: &Catalog,
    command: &CreateOrder,
    details: &OrderDetails,
    metadata: &Metadata,
) -> Result<Outcome, CommandError> {
    let create = Create {
        catalog,
        command,
        details,
    };
    super::run(ledger, metadata, create).await
}

struct Create<'a> {
    catalog: &'a Catalog,
    command: &'a CreateOrder,
    details: &'a OrderDetails,
}

impl Command for Create<'_> {
    type Output = Outcome;
    type Error = CommandError;

    async fn attempt(&mut self, unit: &mut UnitOfWork<'_>) -> Result<Outcome, CommandError> {
        let Create {
            catalog,
            command,
            details,
        } = *self;
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
                &command.order,
                details,
                now,
            )
            .await?;
        }
        Ok(outcome)
    }
}

/// What a change needs to know of the package's history, read under its lock.
enum Prior<'a> {
    Nothing,
    /// The answer recorded earlier for this order, if any; the order's details are kept.
    Order(&'a OrderRef, &'a OrderDetails),
    /// The expiry notice held earlier against the package's current `expiresAt`, if any.
    ExpiryHeld,
    /// Whether the package has a held expiry notice not settled since (any event when it has).
    UnsettledNotice,
}

/// A change to an existing package: locks it and its live tasks, reads what `prior` asks for,
/// decides, and keeps the order's details. With a `catalog` that no longer has the package's SKU,
/// the decision is also given that SKU as recorded on the package.
async fn change(
    ledger: &Ledger,
    metadata: &Metadata,
    instance_id: &InstanceId,
    prior: Prior<'_>,
    catalog: Option<&Catalog>,
    decide: impl Fn(&mut Draft, Option<Event>, Option<&Sku>) -> Result<Outcome, Refusal> + Send + Sync,
) -> Result<Outcome, CommandError> {
    let change = Change {
        instance_id,
        prior,
        catalog,
        decide,
    };
    super::run(ledger, metadata, change).await
}

struct Change<'a, D> {
    instance_id: &'a InstanceId,
    prior: Prior<'a>,
    catalog: Option<&'a Catalog>,
    decide: D,
}

impl<D> Command for Change<'_, D>
where
    D: Fn(&mut Draft, Option<Event>, Option<&Sku>) -> Result<Outcome, Refusal> + Sync + Send,
{
    type Output = Outcome;
    type Error = CommandError;

    async fn attempt(&mut self, unit: &mut UnitOfWork<'_>) -> Result<Outcome, CommandError> {
        let instance_id = self.instance_id;
        unit.lock_packages(&[instance_id]).await?;
        unit.load_live_tasks_of(&[instance_id]).await?;
        let stream = package_stream(instance_id);
        let earlier = match self.prior {
            Prior::Nothing => None,
            Prior::Order(order, _) => {
                let grants = store::read_grants(unit.tx(), &stream)
                    .await?
                    .iter()
                    .map(|recorded| recorded.decode())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(LedgerError::from)?;
                decide::earlier_order(grants, order)
            }
            Prior::ExpiryHeld => match unit.draft.package(instance_id).and_then(|p| p.expires_at) {
                Some(expires_at) => {
                    unit.earlier_event(&expiry_held_key(instance_id, expires_at))
                        .await?
                }
                None => None,
            },
            Prior::UnsettledNotice => {
                let last = store::last_expiry_notice(unit.tx(), &stream).await?;
                let package = unit.draft.package(instance_id).and_then(|p| p.expires_at);
                match (last.as_deref(), package) {
                    (Some("OrderExpiryHeld"), Some(expires_at)) => unit
                        .earlier_event(&expiry_held_key(instance_id, expires_at))
                        .await?
                        .or(Some(Event::OrderExpiryHeld(
                            projections::events::OrderExpiryHeld {
                                instance_id: instance_id.clone(),
                                expires_at,
                            },
                        ))),
                    _ => None,
                }
            }
        };
        let removed = match (self.catalog, unit.draft.package(instance_id)) {
            (Some(catalog), Some(package)) if catalog.get(&package.sku_id).is_none() => {
                Some(package.clone())
            }
            _ => None,
        };
        let recorded = match removed {
            Some(package) => recorded_sku(unit.tx(), &package).await?,
            None => None,
        };
        let outcome = (self.decide)(&mut unit.draft, earlier, recorded.as_ref())?;
        if let (Outcome::Recorded(_), Prior::Order(order, details)) = (&outcome, &self.prior) {
            let now = unit.draft.now;
            save_details(unit.tx(), instance_id, order, details, now).await?;
        }
        Ok(outcome)
    }
}

/// The package's SKU as recorded on it: size and price from the package, name and currency from
/// the event that put the package on that SKU (its purchase or its last upgrade). `None` if no
/// such event names it, which no fold can produce.
async fn recorded_sku(
    tx: &Transaction<'_>,
    package: &projections::Package,
) -> Result<Option<Sku>, LedgerError> {
    let stream = package_stream(&package.instance_id);
    let Some(choice) = store::sku_choice(tx, &stream).await? else {
        return Ok(None);
    };
    Ok(match (choice.sku_id, choice.name, choice.currency) {
        (Some(sku_id), Some(name), Some(currency)) if sku_id == package.sku_id.as_str() => {
            Some(Sku {
                id: package.sku_id.clone(),
                name,
                bytes: package.sku_bytes,
                price: package.unit_price,
                currency,
            })
        }
        _ => None,
    })
}

pub async fn renew(
    ledger: &Ledger,
    catalog: &Catalog,
    command: &RenewOrder,
    metadata: &Metadata,
) -> Result<Outcome, CommandError> {
    let decide = |draft: &mut Draft, earlier, recorded: Option<&Sku>| {
        decide::renew(draft, command, catalog, recorded, earlier)
    };
    let order = (&command.instance_id, &command.order);
    let details = OrderDetails::default();
    change_by_order(ledger, metadata, order, &details, Some(catalog), decide).await
}

pub async fn upgrade(
    ledger: &Ledger,
    catalog: &Catalog,
    command: &UpgradeOrder,
    details: &OrderDetails,
    metadata: &Metadata,
) -> Result<Outcome, CommandError> {
    let decide = |draft: &mut Draft, earlier, _: Option<&Sku>| {
        decide::upgrade(draft, command, catalog, earlier)
    };
    let order = (&command.instance_id, &command.order);
    change_by_order(ledger, metadata, order, details, None, decide).await
}

pub async fn dilate(
    ledger: &Ledger,
    catalog: &Catalog,
    command: &DilateOrder,
    details: &OrderDetails,
    metadata: &Metadata,
) -> Result<Outcome, CommandError> {
    let decide = |draft: &mut Draft, earlier, recorded: Option<&Sku>| {
        decide::dilate(draft, command, catalog, recorded, earlier)
    };
    let order = (&command.instance_id, &command.order);
    change_by_order(ledger, metadata, order, details, Some(catalog), decide).await
}

/// A [`change`] an order makes to its package (`order`: the package and the order): the answer
/// recorded for the order earlier, if any, is looked up, and the order's `details` are kept.
async fn change_by_order(
    ledger: &Ledger,
    metadata: &Metadata,
    (instance_id, order): (&InstanceId, &OrderRef),
    details: &OrderDetails,
    catalog: Option<&Catalog>,
    decide: impl Fn(&mut Draft, Option<Event>, Option<&Sku>) -> Result<Outcome, Refusal> + Send + Sync,
) -> Result<Outcome, CommandError> {
    let prior = Prior::Order(order, details);
    change(ledger, metadata, instance_id, prior, catalog, decide).await
}

pub async fn expire(
    ledger: &Ledger,
    instance_id: &InstanceId,
    metadata: &Metadata,
) -> Result<Outcome, CommandError> {
    let decide = |draft: &mut Draft, held| decide::expire(draft, instance_id, held);
    change_package(ledger, metadata, instance_id, Prior::ExpiryHeld, decide).await
}

/// An operator applies the package's held expiry notice (see [`decide::apply_held_expiry`]).
pub async fn apply_held_expiry(
    ledger: &Ledger,
    instance_id: &InstanceId,
    reason: ExpiryReason,
    metadata: &Metadata,
) -> Result<Outcome, CommandError> {
    let decide = |draft: &mut Draft, held: Option<Event>| {
        decide::apply_held_expiry(draft, instance_id, reason, held.is_some())
    };
    change_package(
        ledger,
        metadata,
        instance_id,
        Prior::UnsettledNotice,
        decide,
    )
    .await
}

pub async fn release(
    ledger: &Ledger,
    instance_id: &InstanceId,
    metadata: &Metadata,
) -> Result<Outcome, CommandError> {
    let decide = |draft: &mut Draft, _| decide::release(draft, instance_id);
    change_package(ledger, metadata, instance_id, Prior::Nothing, decide).await
}

/// A [`change`] the clock or an operator makes: it names no order and needs no catalog.
async fn change_package(
    ledger: &Ledger,
    metadata: &Metadata,
    instance_id: &InstanceId,
    prior: Prior<'_>,
    decide: impl Fn(&mut Draft, Option<Event>) -> Result<Outcome, Refusal> + Send + Sync,
) -> Result<Outcome, CommandError> {
    let decide = |draft: &mut Draft, earlier, _: Option<&Sku>| decide(draft, earlier);
    change(ledger, metadata, instance_id, prior, None, decide).await
}

/// Due packages read per query of a sweep; a pass pages through all of them, so this bounds
/// memory and the length of one read, not how many packages a pass expires.
pub const SWEEP_BATCH_MAX: i64 = 500;

/// Records `OrderExpired` for active packages whose `expiresAt` has passed by our clock. Several
/// processes may sweep at once: each package is re-checked under its lock.
///
/// Each package is expired in its own transaction. One that fails for a reason a retry cannot fix
/// (a row the fold refuses, say) is logged as an error naming it and skipped: the pass goes on
/// with the others, and because a pass pages through every due package (by `expiresAt`, then id)
/// no number of failing packages can keep the others from expiring. Only an unavailable database
/// ends a pass early; the next pass starts over.
pub async fn expire_due(ledger: &Ledger, metadata: &Metadata) -> Result<usize, CommandError> {
    // Packages that fall due while the pass runs wait for the next one, so a pass always ends.
    let cutoff = Utc::now();
    let mut after: Option<(DateTime<Utc>, String)> = None;
    let mut expired = 0;
    loop {
        let due = due_packages(ledger, cutoff, after.as_ref()).await?;
        let Some(last) = due.last() else {
            return Ok(expired);
        };
        after = Some(last.clone());
        for (_, id) in &due {
            let Ok(instance_id) = InstanceId::parse(id.clone()) else {
                tracing::error!(instance_id = %id, "package id is unreadable; it cannot expire");
                continue;
            };
            match expire_one(ledger, metadata, &instance_id).await {
                Ok(true) => {
                    tracing::info!(instance_id = %instance_id, "order expired by the clock");
                    expired += 1;
                }
                Ok(false) => {}
                Err(error) if error.is_unavailable() => return Err(error.into()),
                Err(error) => tracing::error!(
                    instance_id = %instance_id,
                    %error,
                    "order could not be expired by the clock; skipped, the next pass tries again"
                ),
            }
        }
    }
}

/// One page of active packages due at `cutoff`, after the `(expires_at, instance_id)` cursor.
async fn due_packages(
    ledger: &Ledger,
    cutoff: DateTime<Utc>,
    after: Option<&(DateTime<Utc>, String)>,
) -> Result<Vec<(DateTime<Utc>, String)>, CommandError> {
    let client = ledger.pool.get().await?;
    Ok(super::rows::due_packages(&client, cutoff, after, SWEEP_BATCH_MAX).await?)
}

/// Expires one package if it is still due; whether it expired now.
async fn expire_one(
    ledger: &Ledger,
    metadata: &Metadata,
    instance_id: &InstanceId,
) -> Result<bool, LedgerError> {
    super::run(ledger, metadata, ExpireIfDue(instance_id)).await
}

struct ExpireIfDue<'a>(&'a InstanceId);

impl Command for ExpireIfDue<'_> {
    type Output = bool;
    type Error = LedgerError;

    async fn attempt(&mut self, unit: &mut UnitOfWork<'_>) -> Result<bool, LedgerError> {
        unit.lock_packages(&[self.0]).await?;
        unit.load_live_tasks_of(&[self.0]).await?;
        Ok(unit.draft.expire_if_due(self.0)?)
    }
}

/// Largest page of held notices or refused callbacks: built in memory and printed or sent whole.
pub const LIST_LIMIT_MAX: i64 = 1_000;

/// An expiry notice the marketplace sent while the package's `expiresAt` was ahead, not settled
/// since: the package has not expired (by the clock, the marketplace or an operator) nor been
/// released after it. An operator applies it when it was a refund ([`apply_held_expiry`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"position": 4711, "instanceId": "1001", "jdPin": "alice", "heldAt": "2026-11-26T08:00:00Z", "heldAgainst": "2027-11-26T08:00:00Z", "expiresAt": "2027-11-26T08:00:00Z"})))]
pub struct HeldNotice {
    /// The ledger position of its `OrderExpiryHeld`.
    pub position: i64,
    pub instance_id: String,
    pub jd_pin: String,
    /// When the notice arrived (and was recorded).
    pub held_at: DateTime<Utc>,
    /// The package's `expiresAt` the notice was held against.
    pub held_against: DateTime<Utc>,
    /// The package's `expiresAt` now (a later renewal may have moved it).
    pub expires_at: Option<DateTime<Utc>>,
}

/// Held notices not settled since, of active packages, oldest first, after position `after`, at
/// most `limit`.
///
/// The store lists the notices not settled since (a handful of events, behind partial indexes:
/// no traffic is read), the package rows say which packages are active; notices of the others
/// are passed over, and the next notices read, until the page is full or none are left.
pub async fn held_notices(
    client: &impl deadpool_postgres::GenericClient,
    after: i64,
    limit: i64,
) -> Result<Vec<HeldNotice>, tokio_postgres::Error> {
    let limit = limit.clamp(1, LIST_LIMIT_MAX + 1);
    let mut held = Vec::new();
    let mut after = after;
    loop {
        let notices = store::unsettled_notices(client, after, limit).await?;
        let ids: Vec<&str> = notices
            .iter()
            .filter_map(|notice| notice.stream_id.strip_prefix(PACKAGE_STREAM_PREFIX))
            .collect();
        let active = super::rows::active_packages(client, &ids).await?;
        for notice in &notices {
            let package = notice
                .stream_id
                .strip_prefix(PACKAGE_STREAM_PREFIX)
                .and_then(|id| active.iter().find(|p| p.instance_id == id));
            if let Some(package) = package {
                held.push(HeldNotice {
                    position: notice.position,
                    instance_id: package.instance_id.clone(),
                    jd_pin: package.jd_pin.clone(),
                    held_at: notice.held_at,
                    held_against: notice.held_against,
                    expires_at: package.expires_at,
                });
                if held.len() as i64 == limit {
                    return Ok(held);
                }
            }
        }
        match notices.last() {
            Some(last) if notices.len() as i64 == limit => after = last.position,
            _ => return Ok(held),
        }
    }
}

/// A package's credential rotated: its new generation, and the sessions the old one had opened
/// that were ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotated {
    pub generation: u32,
    pub sessions_ended: u64,
}

/// Rotates the package's order credential (see [`decide::rotate_credential`]) and, in the same
/// transaction, ends every console session its old credential or sign-in link opened, except
/// `keep` (the hash of the session of the customer who rotates it from the console).
pub async fn rotate_credential(
    ledger: &Ledger,
    instance_id: &InstanceId,
    keep: Option<&[u8]>,
    metadata: &Metadata,
) -> Result<Rotated, CommandError> {
    super::run(ledger, metadata, Rotate { instance_id, keep }).await
}

struct Rotate<'a> {
    instance_id: &'a InstanceId,
    keep: Option<&'a [u8]>,
}

impl Command for Rotate<'_> {
    type Output = Rotated;
    type Error = CommandError;

    async fn attempt(&mut self, unit: &mut UnitOfWork<'_>) -> Result<Rotated, CommandError> {
        let instance_id = self.instance_id;
        // Under the package's lock, so two rotations at once make two generations, in order.
        unit.lock_packages(&[instance_id]).await?;
        let stream = package_stream(instance_id);
        let current = store::credential_generation(unit.tx(), &stream)
            .await
            .map_err(LedgerError::from)?;
        let Event::OrderCredentialRotated(rotated) =
            decide::rotate_credential(&mut unit.draft, instance_id, current)?
        else {
            unreachable!("a rotation records a rotation");
        };
        let statement = unit
            .tx()
            .prepare_cached(
                "DELETE FROM console_sessions
                  WHERE signed_in_with = $1 AND id_hash IS DISTINCT FROM $2",
            )
            .await?;
        let sessions_ended = unit
            .tx()
            .execute(&statement, &[&instance_id.as_str(), &self.keep])
            .await?;
        Ok(Rotated {
            generation: rotated.generation,
            sessions_ended,
        })
    }
}

/// The generation of a package's order credential now (0: never rotated).
pub async fn credential_generation(
    client: &impl deadpool_postgres::GenericClient,
    instance_id: &InstanceId,
) -> Result<u32, store::StoreError> {
    store::credential_generation(client, &package_stream(instance_id)).await
}
