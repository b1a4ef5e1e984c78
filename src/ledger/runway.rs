//! The runway check: a periodic pass that records `OrderRunwayShort` for every package whose
//! runway has come within a threshold.
//!
//! Why a pass and not the traffic batch: the runway needs the package's last 7 days of traffic,
//! a read the hot path should not pay per batch, and it moves by hours, not by reports. Each
//! pass reads the runways of active packages with traffic in the last 7 days, a page of packages
//! at a time (their balances, then their traffic windows), and for each one within a threshold runs a unit of work that locks the package,
//! computes its runway again, looks the announcement's key up and appends what is new. So every
//! process may run the pass: the lock orders them, the key (under the unique index) makes each
//! announcement once, across restarts and processes.

use super::{Command, Ledger, LedgerError, UnitOfWork};
use crate::domain::runway::announce;
use crate::store::Metadata;
use chrono::{DateTime, Duration, Utc};
use projections::ids::InstanceId;
use projections::keys::runway_short_key;

/// Packages read per page of a pass: one read of their runways each page.
pub const CHECK_PAGE_MAX: i64 = 500;

/// One pass over the active packages with recent traffic; how many announcements it recorded.
pub async fn check(
    ledger: &Ledger,
    thresholds_days: &[u32],
    metadata: &Metadata,
    now: DateTime<Utc>,
) -> Result<usize, LedgerError> {
    let Some(&widest) = thresholds_days.iter().max() else {
        return Ok(0);
    };
    let mut after = String::new();
    let mut recorded = 0;
    loop {
        let page = recent_packages(ledger, &after, now).await?;
        let Some(last) = page.last() else {
            return Ok(recorded);
        };
        after = last.as_str().to_owned();
        let runways = {
            let client = ledger.pool.get().await?;
            crate::usage::runways(&client, &page, now).await?
        };
        for (instance_id, runway) in runways {
            if runway.days > widest || runway.expires_first {
                continue;
            }
            let command = Announce {
                instance_id: &instance_id,
                thresholds_days,
                now,
            };
            match super::run(ledger, metadata, command).await {
                Ok(crossed) => {
                    for threshold_days in &crossed {
                        tracing::info!(
                            instance_id = %instance_id,
                            threshold_days,
                            runs_out_on = %runway.runs_out_on,
                            "runway short announced"
                        );
                    }
                    recorded += crossed.len();
                }
                Err(error) if error.is_unavailable() => return Err(error),
                Err(error) => tracing::error!(
                    instance_id = %instance_id,
                    %error,
                    "runway could not be announced; skipped, the next pass tries again"
                ),
            }
        }
    }
}

/// A page of active packages with bytes left and a change in the last 7 days (traffic moves
/// `updated_at`), after `after` in id order.
async fn recent_packages(
    ledger: &Ledger,
    after: &str,
    now: DateTime<Utc>,
) -> Result<Vec<InstanceId>, LedgerError> {
    let client = ledger.pool.get().await?;
    let since = now - Duration::hours(crate::usage::RATE_WINDOW_HOURS);
    Ok(
        super::rows::changed_active_packages(&client, since, after, CHECK_PAGE_MAX)
            .await?
            .into_iter()
            .filter_map(|id| InstanceId::parse(id).ok())
            .collect(),
    )
}

/// Announces the thresholds one package's runway has newly reached, under its lock.
struct Announce<'a> {
    instance_id: &'a InstanceId,
    thresholds_days: &'a [u32],
    now: DateTime<Utc>,
}

impl Command for Announce<'_> {
    type Output = Vec<u32>;
    type Error = LedgerError;

    async fn attempt(&mut self, unit: &mut UnitOfWork<'_>) -> Result<Vec<u32>, LedgerError> {
        let instance_id = self.instance_id;
        unit.lock_packages(&[instance_id]).await?;
        let Some(package) = unit.draft.package(instance_id) else {
            return Ok(Vec::new());
        };
        let granted = package.bytes_granted;
        let runways =
            crate::usage::runways(unit.tx(), std::slice::from_ref(instance_id), self.now).await?;
        let Some(runway) = runways.get(instance_id) else {
            return Ok(Vec::new());
        };
        let keys: Vec<String> = self
            .thresholds_days
            .iter()
            .map(|&days| runway_short_key(instance_id, days, granted))
            .collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let earlier = unit.earlier_events(&keys).await?;
        Ok(announce(
            &mut unit.draft,
            instance_id,
            runway,
            self.thresholds_days,
            |key| earlier.contains_key(key),
        )?)
    }
}
