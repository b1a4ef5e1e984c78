//! Identifiers and quantities, parsed once at the edge.
//!
//! Past the edge an invalid id or byte count cannot exist: every constructor checks its limits, and
//! the inner values are private.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// Longest identifier accepted from any caller, in characters (Unicode scalar values, as JSON
/// Schema's `maxLength` counts them).
///
/// Marketplace ids (`orderBizId`, `skuId`, `jdPin`) are a few dozen characters, DTS task and report
/// ids are UUID-sized. 128 leaves ample room while keeping index entries and log lines bounded.
pub const ID_CHARS_MAX: usize = 128;
/// The most bytes an id takes in UTF-8: four per character.
pub const ID_BYTES_MAX: usize = 4 * ID_CHARS_MAX;

/// The characters an id may not start or end with: Unicode's White_Space (what `str::trim`
/// removes), as regular-expression escapes that JSON Schema (ECMA-262) and Python read alike.
macro_rules! white_space {
    () => {
        r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
    };
}
/// The control characters (Unicode's Cc: what `char::is_control` is), likewise.
macro_rules! control {
    () => {
        r"\x00-\x1f\x7f-\x9f"
    };
}

/// The characters of an id, after the pattern's `^`: no control character anywhere, no white
/// space at either end.
macro_rules! id_characters {
    () => {
        concat!(
            r"[^",
            white_space!(),
            control!(),
            r"](?:[^",
            control!(),
            r"]*[^",
            white_space!(),
            control!(),
            r"])?$"
        )
    };
}
/// An id as a JSON Schema `pattern`: no control character anywhere, no white space at either end
/// (the length is `maxLength`, [`ID_CHARS_MAX`]).
pub const ID_PATTERN: &str = concat!(r"^", id_characters!());
/// An id that URLs carry as one path segment: [`ID_PATTERN`], and not `.` or `..`.
pub const PATH_ID_PATTERN: &str = concat!(r"^(?!\.\.?$)", id_characters!());

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("is {len} characters long, the limit is {max}")]
    TooLong { len: usize, max: usize },
    #[error("contains a control character")]
    ControlCharacter,
    #[error("has leading or trailing whitespace")]
    Whitespace,
    #[error("is `.` or `..`, which no URL can carry as a path segment")]
    DotSegment,
}

fn check_id(value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty);
    }
    let chars = value.chars().count();
    if chars > ID_CHARS_MAX {
        return Err(IdError::TooLong {
            len: chars,
            max: ID_CHARS_MAX,
        });
    }
    if value.chars().any(char::is_control) {
        return Err(IdError::ControlCharacter);
    }
    if value.trim() != value {
        return Err(IdError::Whitespace);
    }
    Ok(())
}

/// An id that URLs carry as one path segment (`/v1/tasks/{taskId}`, the console's links): any
/// character works there once percent-encoded, except the whole segments `.` and `..`, which
/// every client resolves away, encoded or not (`%2E%2E` is `..` to a browser).
fn check_path_id(value: &str) -> Result<(), IdError> {
    check_id(value)?;
    if value == "." || value == ".." {
        return Err(IdError::DotSegment);
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        string_id!($(#[$doc])* $name, check_id);
    };
    ($(#[$doc:meta])* $name:ident, $check:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                $check(&value)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = String::deserialize(deserializer)?;
                Self::parse(value).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_id!(
    /// A package: the marketplace's `instanceId`, which is the `orderBizId` of its purchase.
    InstanceId,
    check_path_id
);
string_id!(
    /// A DTS task, named by the DTS control plane.
    TaskId,
    check_path_id
);
string_id!(
    /// A traffic report, unique per task.
    ReportId
);
string_id!(
    /// A marketplace charge item (收费项目), one per package size.
    SkuId
);
string_id!(
    /// The customer's JD Cloud account.
    JdPin
);
string_id!(
    /// One marketplace order (a purchase, renewal, upgrade or expansion), as the deprecated
    /// `orderId` names it.
    OrderId
);
string_id!(
    /// One marketplace order as the notify interface's current revision names it (`orderNumber`,
    /// the number the marketplace's own order API uses; it replaces `orderId`).
    OrderNumber
);

/// Which marketplace order a callback is about: its `orderNumber`, its deprecated `orderId`, or
/// both. At least one is always there: [`OrderRef::new`] refuses neither.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrderRef {
    number: Option<OrderNumber>,
    id: Option<OrderId>,
}

impl OrderRef {
    pub fn new(number: Option<OrderNumber>, id: Option<OrderId>) -> Option<OrderRef> {
        (number.is_some() || id.is_some()).then_some(OrderRef { number, id })
    }

    pub fn number(&self) -> Option<&OrderNumber> {
        self.number.as_ref()
    }

    pub fn id(&self) -> Option<&OrderId> {
        self.id.as_ref()
    }

    /// Whether both name the same order: by `orderNumber` when both carry one, else by `orderId`
    /// when both carry one. A callback recorded under `orderId` alone is thus matched by its
    /// retry that carries `orderNumber` too, and the other way round.
    pub fn same_order(&self, other: &OrderRef) -> bool {
        match (&self.number, &other.number, &self.id, &other.id) {
            (Some(a), Some(b), _, _) => a == b,
            (_, _, Some(a), Some(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Display for OrderRef {
    /// `orderNumber N`, `orderId I` or `orderNumber N (orderId I)`, for messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.number, &self.id) {
            (Some(number), Some(id)) => write!(f, "orderNumber {number} (orderId {id})"),
            (Some(number), None) => write!(f, "orderNumber {number}"),
            (None, Some(id)) => write!(f, "orderId {id}"),
            (None, None) => f.write_str("no order"),
        }
    }
}

/// A number of bytes: never negative and never above what a PostgreSQL `bigint` holds.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Bytes(u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BytesError {
    #[error("is negative")]
    Negative,
    #[error("is {value}, above the largest storable count {max}")]
    TooLarge { value: u128, max: u64 },
}

impl Bytes {
    /// Largest storable count: the ledger keeps bytes in signed 64-bit columns.
    pub const MAX: Bytes = Bytes(i64::MAX as u64);
    pub const ZERO: Bytes = Bytes(0);

    pub fn new(value: u64) -> Result<Self, BytesError> {
        Self::from_i128(i128::from(value))
    }

    pub fn from_i64(value: i64) -> Result<Self, BytesError> {
        Self::from_i128(i128::from(value))
    }

    pub fn from_i128(value: i128) -> Result<Self, BytesError> {
        if value < 0 {
            return Err(BytesError::Negative);
        }
        if value > i128::from(Self::MAX.0) {
            return Err(BytesError::TooLarge {
                value: value as u128,
                max: Self::MAX.0,
            });
        }
        Ok(Bytes(value as u64))
    }

    pub fn get(self) -> u64 {
        self.0
    }

    /// The count as PostgreSQL `bigint`; lossless by construction.
    pub fn as_i64(self) -> i64 {
        self.0 as i64
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn checked_add(self, other: Bytes) -> Option<Bytes> {
        self.0
            .checked_add(other.0)
            .and_then(|sum| Bytes::new(sum).ok())
    }

    pub fn checked_sub(self, other: Bytes) -> Option<Bytes> {
        self.0.checked_sub(other.0).map(Bytes)
    }

    pub fn checked_mul(self, factor: u64) -> Option<Bytes> {
        self.0
            .checked_mul(factor)
            .and_then(|product| Bytes::new(product).ok())
    }

    pub fn saturating_sub(self, other: Bytes) -> Bytes {
        Bytes(self.0.saturating_sub(other.0))
    }

    /// The sum, capped at [`Bytes::MAX`].
    pub fn saturating_add(self, other: Bytes) -> Bytes {
        self.checked_add(other).unwrap_or(Bytes::MAX)
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}B", self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = i128::deserialize(deserializer)?;
        Bytes::from_i128(value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_reject_empty_long_and_control_characters() {
        assert_eq!(TaskId::parse(""), Err(IdError::Empty));
        assert_eq!(
            TaskId::parse("x".repeat(ID_CHARS_MAX + 1)),
            Err(IdError::TooLong {
                len: ID_CHARS_MAX + 1,
                max: ID_CHARS_MAX
            })
        );
        assert_eq!(TaskId::parse("a\nb"), Err(IdError::ControlCharacter));
        assert_eq!(TaskId::parse(" a"), Err(IdError::Whitespace));
        assert_eq!(TaskId::parse("任务-1").unwrap().as_str(), "任务-1");
        assert!(TaskId::parse("x".repeat(ID_CHARS_MAX)).is_ok());
        assert!(
            TaskId::parse("流".repeat(ID_CHARS_MAX)).is_ok(),
            "characters, not bytes"
        );
    }

    #[test]
    fn order_references_match_by_number_first_then_by_id() {
        let number = |n: &str| Some(OrderNumber::parse(n).unwrap());
        let id = |i: &str| Some(OrderId::parse(i).unwrap());
        let both = OrderRef::new(number("529107885755794112"), id("556596")).unwrap();
        let by_id = OrderRef::new(None, id("556596")).unwrap();
        let by_number = OrderRef::new(number("529107885755794112"), None).unwrap();
        assert!(both.same_order(&by_id) && by_id.same_order(&both));
        assert!(both.same_order(&by_number) && by_number.same_order(&both));
        assert!(!by_id.same_order(&by_number), "nothing in common");
        let other_number = OrderRef::new(number("529107885755794113"), id("556596")).unwrap();
        assert!(
            !both.same_order(&other_number),
            "numbers decide when both carry one"
        );
        assert!(OrderRef::new(None, None).is_none());
        assert_eq!(
            both.to_string(),
            "orderNumber 529107885755794112 (orderId 556596)"
        );
    }

    #[test]
    fn ids_in_urls_may_hold_anything_but_a_dot_segment() {
        for dots in [".", ".."] {
            assert_eq!(TaskId::parse(dots), Err(IdError::DotSegment));
            assert_eq!(InstanceId::parse(dots), Err(IdError::DotSegment));
            assert!(ReportId::parse(dots).is_ok(), "not in a URL");
        }
        for fine in [
            "...",
            "..a",
            "a/b?c#d",
            "../T2/destroy?",
            "../../v1/ledger?x=",
        ] {
            assert!(TaskId::parse(fine).is_ok(), "{fine}");
            assert!(InstanceId::parse(fine).is_ok(), "{fine}");
        }
    }

    #[test]
    fn ids_deserialize_through_parse() {
        assert!(serde_json::from_str::<InstanceId>("\"\"").is_err());
        let id: InstanceId = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(id.as_str(), "abc");
    }

    #[test]
    fn bytes_stay_within_bigint() {
        assert_eq!(Bytes::from_i64(-1), Err(BytesError::Negative));
        assert!(Bytes::new(u64::MAX).is_err());
        assert_eq!(Bytes::MAX.checked_add(Bytes::new(1).unwrap()), None);
        assert_eq!(Bytes::new(3).unwrap().checked_mul(2), Bytes::new(6).ok());
        assert_eq!(
            Bytes::new(3).unwrap().checked_sub(Bytes::new(4).unwrap()),
            None
        );
        assert!(serde_json::from_str::<Bytes>("-5").is_err());
        assert!(serde_json::from_str::<Bytes>("1.5").is_err());
        assert_eq!(serde_json::from_str::<Bytes>("42").unwrap().get(), 42);
    }
}
