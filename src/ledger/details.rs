//! Customer details kept with an order: personal or free-form, so they live in the erasable
//! `order_details` table beside the ledger, never in its immutable events.

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use projections::ids::{InstanceId, OrderRef};

/// Customer details that come with an order. They are personal data or free-form, so they live in
/// the erasable `order_details` table, never in the immutable ledger.
///
/// An optional detail that failed its checks never refuses the order: it is kept as received
/// (truncated to its limit, made storable) and its parameter name is listed in `invalid`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderDetails {
    pub mobile: Option<String>,
    pub email: Option<String>,
    pub extra_info: Option<String>,
    pub addition_info: Option<String>,
    /// `template` only when it failed its checks; a valid one is part of the order's event.
    pub template: Option<String>,
    /// The parameters above that failed their checks, with why.
    pub invalid: Vec<InvalidDetail>,
}

/// An optional parameter kept although it failed its checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidDetail {
    pub name: &'static str,
    pub problem: &'static str,
}

impl OrderDetails {
    fn is_empty(&self) -> bool {
        self == &OrderDetails::default()
    }
}

pub(super) async fn save_details(
    tx: &Transaction<'_>,
    instance_id: &InstanceId,
    order: &OrderRef,
    details: &OrderDetails,
    at: DateTime<Utc>,
) -> Result<(), tokio_postgres::Error> {
    if details.is_empty() {
        return Ok(());
    }
    let statement = tx
        .prepare_cached(
            "INSERT INTO order_details
                 (instance_id, order_id, order_number, mobile, email, extra_info, addition_info,
                  template, invalid_params, recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (instance_id, (coalesce(order_number, '')), (coalesce(order_id, '')))
             DO NOTHING",
        )
        .await?;
    let invalid: Vec<&str> = details.invalid.iter().map(|detail| detail.name).collect();
    tx.execute(
        &statement,
        &[
            &instance_id.as_str(),
            &order.id().map(|id| id.as_str()),
            &order.number().map(|number| number.as_str()),
            &details.mobile,
            &details.email,
            &details.extra_info,
            &details.addition_info,
            &details.template,
            &invalid,
            &at,
        ],
    )
    .await
    .map(drop)
}

/// Erases the personal data kept with a package's orders (mobile, email, free-form order info,
/// the invalid `template`), leaving the rows and their ids; returns how many orders were erased
/// now (0 when they all were before).
pub async fn erase_details(
    client: &impl deadpool_postgres::GenericClient,
    instance_id: &InstanceId,
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "UPDATE order_details
                SET mobile = NULL, email = NULL, extra_info = NULL, addition_info = NULL,
                    template = NULL, erased_at = now()
              WHERE instance_id = $1 AND erased_at IS NULL",
            &[&instance_id.as_str()],
        )
        .await
}
