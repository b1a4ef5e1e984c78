//! Going on with a ledger that lost acknowledged events in a restore: the operator's decision,
//! recorded once per trusted checkpoint (the audit's restore proof finds the loss at start).

use super::Draft;
use projections::events::{Event, LedgerRestoreAccepted};
use projections::FoldError;

/// The longest reason an operator may give: a sentence or two naming the incident and the
/// ticket; the ledger is no place for an essay.
pub const REASON_CHARS_MAX: usize = 500;

/// An operator's reason for going on: 1 to [`REASON_CHARS_MAX`] characters, no control
/// characters (it is shown on log lines and in the ledger).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason(String);

impl Reason {
    pub fn parse(text: &str) -> Result<Reason, String> {
        let text = text.trim();
        if text.is_empty() || text.chars().count() > REASON_CHARS_MAX {
            return Err(format!(
                "a reason must be 1 to {REASON_CHARS_MAX} characters"
            ));
        }
        if text.chars().any(char::is_control) {
            return Err("a reason must not hold control characters (newlines, tabs)".into());
        }
        Ok(Reason(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Decides the event; the ledger's facts about the loss come from the check at start.
pub fn accept_restore_loss(
    draft: &mut Draft,
    accepted: LedgerRestoreAccepted,
) -> Result<Event, FoldError> {
    let event = Event::LedgerRestoreAccepted(accepted);
    draft.emit(event.clone())?;
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_bounded_and_has_no_control_characters() {
        assert_eq!(
            Reason::parse("  ticket 42  ").unwrap().as_str(),
            "ticket 42"
        );
        assert!(Reason::parse("").is_err());
        assert!(Reason::parse("   ").is_err());
        assert!(Reason::parse("a\nb").is_err());
        assert!(Reason::parse(&"x".repeat(REASON_CHARS_MAX)).is_ok());
        assert!(Reason::parse(&"x".repeat(REASON_CHARS_MAX + 1)).is_err());
    }
}
