//! Announcing a short runway (DESIGN §12): once a package's runway at its recent rate is within a
//! threshold, `OrderRunwayShort` is recorded, once per package, threshold and grant generation,
//! so the DTS control plane (by webhook) and the customer learn it in time to renew (R4).

use super::Draft;
use crate::usage::Runway;
use projections::events::{Event, OrderRunwayShort};
use projections::ids::{Bytes, InstanceId};
use projections::keys::runway_short_key;
use projections::{FoldError, PackageStatus};

/// The thresholds `runway` has reached (its `days` at most the threshold), unless the package
/// expires before it runs out (the expiry is what the customer must act on then), or it is not
/// active. Each is announced once: `announced` says whether a key was recorded before.
pub fn announce(
    draft: &mut Draft,
    instance_id: &InstanceId,
    runway: &Runway,
    thresholds_days: &[u32],
    announced: impl Fn(&str) -> bool,
) -> Result<Vec<u32>, FoldError> {
    let Some(package) = draft.package(instance_id) else {
        return Ok(Vec::new());
    };
    if package.status != PackageStatus::Active || runway.expires_first {
        return Ok(Vec::new());
    }
    let (granted, remaining) = (package.bytes_granted, package.bytes_remaining);
    let mut crossed = Vec::new();
    for &threshold_days in thresholds_days {
        if runway.days > threshold_days
            || announced(&runway_short_key(instance_id, threshold_days, granted))
        {
            continue;
        }
        draft.emit(Event::OrderRunwayShort(OrderRunwayShort {
            instance_id: instance_id.clone(),
            threshold_days,
            runs_out_on: runway.runs_out_on,
            rate_per_day: Bytes::new(runway.rate_bytes_per_day.min(Bytes::MAX.get()))
                .unwrap_or(Bytes::MAX),
            bytes_remaining: remaining,
            bytes_granted: granted,
        }))?;
        crossed.push(threshold_days);
    }
    Ok(crossed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::bought_package;
    use chrono::{DateTime, NaiveDate};

    fn package() -> (Draft, InstanceId) {
        bought_package(DateTime::from_timestamp(1_800_000_000, 0).unwrap())
    }

    fn runway(days: u32, expires_first: bool) -> Runway {
        Runway {
            rate_bytes_per_day: 1 << 30,
            runs_out_on: NaiveDate::from_ymd_opt(2027, 1, 1).unwrap(),
            days,
            expires_first,
        }
    }

    #[test]
    fn each_threshold_reached_is_announced_once_per_grant_generation() {
        let (mut draft, id) = package();
        let granted = draft.package(&id).unwrap().bytes_granted;
        // Five days: inside 7, not 1.
        let crossed = announce(&mut draft, &id, &runway(5, false), &[1, 7], |_| false).unwrap();
        assert_eq!(crossed, [7]);
        let Event::OrderRunwayShort(event) = &draft.events[0] else {
            panic!("{:?}", draft.events);
        };
        assert_eq!((event.threshold_days, event.bytes_granted), (7, granted));
        // Announced before (its key is recorded): nothing again; the 1-day one when reached.
        let key = runway_short_key(&id, 7, granted);
        let crossed = announce(&mut draft, &id, &runway(1, false), &[1, 7], |k| k == key).unwrap();
        assert_eq!(crossed, [1]);
        // Another generation is another key.
        assert_ne!(
            key,
            runway_short_key(&id, 7, Bytes::new(granted.get() + 1).unwrap())
        );
    }

    #[test]
    fn a_package_that_expires_before_it_runs_out_is_not_announced() {
        let (mut draft, id) = package();
        let crossed = announce(&mut draft, &id, &runway(0, true), &[1, 7], |_| false).unwrap();
        assert!(crossed.is_empty());
        assert!(draft.events.is_empty());
    }
}
