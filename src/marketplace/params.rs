//! Callback parameters turned into commands, each value checked against a limit.

use super::query::{get, Pairs};
use crate::domain::orders::{CreateOrder, DilateOrder, RenewOrder, UpgradeOrder, UNITS_MAX};
use crate::ledger::details::{InvalidDetail, OrderDetails};
use crate::usage::china_standard_time;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use projections::ids::{IdError, InstanceId, JdPin, OrderId, OrderNumber, OrderRef, SkuId};

/// `serviceCode` and `template`: short codes in the marketplace's admin pages.
pub const CODE_CHARS_MAX: usize = 128;
/// Phone numbers with country code and separators.
pub const MOBILE_CHARS_MAX: usize = 32;
/// RFC 5321's limit on an address.
pub const EMAIL_CHARS_MAX: usize = 254;
/// `extraInfo` / `additionInfo`: small JSON objects of order options.
pub const JSON_BYTES_MAX: usize = 4096;

/// `yyyy-MM-dd HH:mm:ss`, the marketplace's time format.
pub const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// A time as the marketplace writes it (China Standard Time, its clock for `expiredOn` and
/// `timeStamp`).
pub fn format_cst(at: DateTime<Utc>) -> String {
    at.with_timezone(&china_standard_time())
        .format(TIME_FORMAT)
        .to_string()
}

/// The `action` of a callback (its JSON and API-document form is the wire name).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "camelCase")]
#[schema(as = CallbackAction)]
pub enum Action {
    CreateInstance,
    RenewInstance,
    UpgradeInstance,
    DilateInstance,
    ExpiredInstance,
    ReleaseInstance,
    Verify,
}

impl Action {
    pub const ALL: [Action; 7] = [
        Action::CreateInstance,
        Action::RenewInstance,
        Action::UpgradeInstance,
        Action::DilateInstance,
        Action::ExpiredInstance,
        Action::ReleaseInstance,
        Action::Verify,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::CreateInstance => "createInstance",
            Action::RenewInstance => "renewInstance",
            Action::UpgradeInstance => "upgradeInstance",
            Action::DilateInstance => "dilateInstance",
            Action::ExpiredInstance => "expiredInstance",
            Action::ReleaseInstance => "releaseInstance",
            Action::Verify => "verify",
        }
    }

    pub fn parse(value: &[u8]) -> Option<Action> {
        Action::ALL
            .into_iter()
            .find(|action| action.name().as_bytes() == value)
    }
}

/// A parameter that is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter {name} {reason}")]
pub struct ParamError {
    pub name: &'static str,
    pub reason: String,
}

/// A checked callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callback {
    Create(CreateOrder, OrderDetails),
    Renew(RenewOrder),
    Upgrade(UpgradeOrder, OrderDetails),
    Dilate(DilateOrder, OrderDetails),
    Expire(InstanceId),
    Release(InstanceId),
    Verify {
        instance_id: InstanceId,
        time_stamp: DateTime<Utc>,
    },
}

struct Reader<'a> {
    pairs: &'a Pairs,
}

fn error(name: &'static str, reason: impl Into<String>) -> ParamError {
    ParamError {
        name,
        reason: reason.into(),
    }
}

impl<'a> Reader<'a> {
    /// The raw value of `name`. A name sent with spaces around it (the revision's own examples
    /// send `additionInfo =…`) is read as that name when the exact name is absent: it is signed
    /// as received, and a paid order is not refused for a stray space.
    fn raw(&self, name: &str) -> Option<&'a [u8]> {
        get(self.pairs, name).or_else(|| {
            self.pairs
                .iter()
                .find(|(n, _)| n.trim_ascii() == name.as_bytes())
                .map(|(_, v)| v.as_slice())
        })
    }

    /// The value as text; an empty value counts as absent.
    fn text(&self, name: &'static str) -> Result<Option<&'a str>, ParamError> {
        match self.raw(name) {
            None | Some(b"") => Ok(None),
            Some(bytes) => std::str::from_utf8(bytes)
                .map(Some)
                .map_err(|_| error(name, "is not valid UTF-8")),
        }
    }

    fn required(&self, name: &'static str) -> Result<&'a str, ParamError> {
        self.text(name)?
            .ok_or_else(|| error(name, "is required and missing or empty"))
    }

    fn id<T>(
        &self,
        name: &'static str,
        parse: fn(String) -> Result<T, IdError>,
    ) -> Result<T, ParamError> {
        parse(self.required(name)?.to_owned()).map_err(|e| error(name, e.to_string()))
    }

    fn optional_id<T>(
        &self,
        name: &'static str,
        parse: fn(String) -> Result<T, IdError>,
    ) -> Result<Option<T>, ParamError> {
        self.text(name)?
            .map(|value| parse(value.to_owned()).map_err(|e| error(name, e.to_string())))
            .transpose()
    }

    /// The order a callback is about: the current revision's `orderNumber`, the deprecated
    /// `orderId`, or both (both are recorded); at least one is required.
    fn order(&self) -> Result<OrderRef, ParamError> {
        let number = self.optional_id("orderNumber", OrderNumber::parse)?;
        let id = self.optional_id("orderId", OrderId::parse)?;
        OrderRef::new(number, id).ok_or_else(|| {
            error(
                "orderNumber",
                "is required and missing or empty (or the deprecated orderId)",
            )
        })
    }

    fn bounded(&self, name: &'static str, max: usize) -> Result<Option<String>, ParamError> {
        let Some(value) = self.text(name)? else {
            return Ok(None);
        };
        if value.chars().count() > max {
            return Err(error(name, format!("is longer than {max} characters")));
        }
        if value.chars().any(char::is_control) {
            return Err(error(name, "contains a control character"));
        }
        Ok(Some(value.to_owned()))
    }

    fn cst_time(&self, name: &'static str) -> Result<Option<DateTime<Utc>>, ParamError> {
        let Some(value) = self.text(name)? else {
            return Ok(None);
        };
        let naive = NaiveDateTime::parse_from_str(value, TIME_FORMAT).map_err(|_| {
            error(
                name,
                format!("{value:?} is not yyyy-MM-dd HH:mm:ss (China Standard Time)"),
            )
        })?;
        let local = china_standard_time()
            .from_local_datetime(&naive)
            .single()
            .ok_or_else(|| error(name, "is not a valid time"))?;
        Ok(Some(local.with_timezone(&Utc)))
    }

    fn units(&self, name: &'static str, default: Option<u32>) -> Result<u32, ParamError> {
        let value = match (self.text(name)?, default) {
            (Some(value), _) => value,
            (None, Some(default)) => return Ok(default),
            (None, None) => return Err(error(name, "is required and missing or empty")),
        };
        match value.parse::<u32>() {
            Ok(units) if (1..=UNITS_MAX).contains(&units) => Ok(units),
            _ => Err(error(
                name,
                format!("{value:?} is not an integer from 1 to {UNITS_MAX}"),
            )),
        }
    }

    /// An optional detail: never an error. A value that fails its checks comes back as received,
    /// made storable (invalid UTF-8 replaced, NUL — which PostgreSQL text cannot hold — replaced,
    /// cut to the limit), with why it failed.
    fn optional(&self, name: &'static str, check: Check) -> Detail {
        let raw = match self.raw(name) {
            None | Some(b"") => return Detail::default(),
            Some(raw) => raw,
        };
        let mut problem = None;
        let mut value = match std::str::from_utf8(raw) {
            Ok(text) => text.to_owned(),
            Err(_) => {
                problem = Some("is not valid UTF-8");
                String::from_utf8_lossy(raw).into_owned()
            }
        };
        match check {
            Check::Text { chars_max } => {
                if value.chars().any(char::is_control) {
                    problem = problem.or(Some("contains a control character"));
                }
                if let Some((cut, _)) = value.char_indices().nth(chars_max) {
                    problem = problem.or(Some("is longer than its limit"));
                    value.truncate(cut);
                }
            }
            Check::Json => {
                if value.len() > JSON_BYTES_MAX {
                    problem = problem.or(Some("is longer than its limit"));
                    let cut = (0..=JSON_BYTES_MAX)
                        .rev()
                        .find(|at| value.is_char_boundary(*at))
                        .unwrap_or(0);
                    value.truncate(cut);
                } else if serde_json::from_str::<serde::de::IgnoredAny>(&value).is_err() {
                    problem = problem.or(Some("is not JSON"));
                }
            }
        }
        if value.contains('\0') {
            value = value.replace('\0', "\u{FFFD}");
        }
        Detail {
            value: Some(value),
            invalid: problem.map(|problem| InvalidDetail { name, problem }),
        }
    }

    /// The optional details of a purchase, and its `template` if that one is valid (it goes into
    /// the order's event; an invalid one goes with the details).
    fn details(&self) -> (OrderDetails, Option<String>) {
        let mut details = OrderDetails::default();
        let mut keep = |detail: Detail| {
            details.invalid.extend(detail.invalid);
            detail.value
        };
        details.mobile = keep(self.optional(
            "mobile",
            Check::Text {
                chars_max: MOBILE_CHARS_MAX,
            },
        ));
        details.email = keep(self.optional(
            "email",
            Check::Text {
                chars_max: EMAIL_CHARS_MAX,
            },
        ));
        details.extra_info = keep(self.optional("extraInfo", Check::Json));
        details.addition_info = keep(self.optional("additionInfo", Check::Json));
        let template = self.optional(
            "template",
            Check::Text {
                chars_max: CODE_CHARS_MAX,
            },
        );
        let template = match template.invalid {
            None => template.value,
            Some(invalid) => {
                details.template = template.value;
                details.invalid.push(invalid);
                None
            }
        };
        (details, template)
    }

    /// `extraInfo` of an upgrade or expansion.
    fn extra_info(&self) -> OrderDetails {
        let detail = self.optional("extraInfo", Check::Json);
        OrderDetails {
            extra_info: detail.value,
            invalid: detail.invalid.into_iter().collect(),
            ..OrderDetails::default()
        }
    }
}

/// What an optional detail must be.
#[derive(Debug, Clone, Copy)]
enum Check {
    /// Text without control characters, at most this many characters.
    Text { chars_max: usize },
    /// JSON of at most [`JSON_BYTES_MAX`] bytes.
    Json,
}

/// An optional detail as kept, and why it failed its checks if it did.
#[derive(Debug, Default)]
struct Detail {
    value: Option<String>,
    invalid: Option<InvalidDetail>,
}

/// Checks every parameter `action` uses; parameters it does not use are ignored (the token still
/// covers them).
pub fn parse(action: Action, pairs: &Pairs) -> Result<Callback, ParamError> {
    let r = Reader { pairs };
    Ok(match action {
        Action::CreateInstance => {
            let (details, template) = r.details();
            Callback::Create(
                CreateOrder {
                    instance_id: r.id("orderBizId", InstanceId::parse)?,
                    jd_pin: r.id("jdPin", JdPin::parse)?,
                    order: r.order()?,
                    service_code: r
                        .bounded("serviceCode", CODE_CHARS_MAX)?
                        .ok_or_else(|| error("serviceCode", "is required and missing or empty"))?,
                    sku_id: r.id("skuId", SkuId::parse)?,
                    units: r.units("accountNum", Some(1))?,
                    expires_at: r.cst_time("expiredOn")?,
                    template,
                },
                details,
            )
        }
        Action::RenewInstance => Callback::Renew(RenewOrder {
            instance_id: r.id("instanceId", InstanceId::parse)?,
            order: r.order()?,
            expires_at: r
                .cst_time("expiredOn")?
                .ok_or_else(|| error("expiredOn", "is required and missing or empty"))?,
        }),
        Action::UpgradeInstance => Callback::Upgrade(
            UpgradeOrder {
                instance_id: r.id("instanceId", InstanceId::parse)?,
                order: r.order()?,
                sku_id: r.id("skuId", SkuId::parse)?,
            },
            r.extra_info(),
        ),
        Action::DilateInstance => Callback::Dilate(
            DilateOrder {
                instance_id: r.id("instanceId", InstanceId::parse)?,
                order: r.order()?,
                units: r.units("accountNum", None)?,
            },
            r.extra_info(),
        ),
        Action::ExpiredInstance => Callback::Expire(r.id("instanceId", InstanceId::parse)?),
        Action::ReleaseInstance => Callback::Release(r.id("instanceId", InstanceId::parse)?),
        Action::Verify => Callback::Verify {
            instance_id: r.id("instanceId", InstanceId::parse)?,
            time_stamp: r
                .cst_time("timeStamp")?
                .ok_or_else(|| error("timeStamp", "is required and missing or empty"))?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::query::parse as parse_query;
    use super::*;

    #[test]
    fn an_actions_json_form_is_its_wire_name() {
        for action in Action::ALL {
            assert_eq!(serde_json::to_value(action).unwrap(), action.name());
            assert_eq!(Action::parse(action.name().as_bytes()), Some(action));
        }
    }

    fn create(query: &str) -> Result<Callback, ParamError> {
        parse(Action::CreateInstance, &parse_query(query).unwrap())
    }

    const BASE: &str = "jdPin=pin&orderBizId=biz-1&orderId=o-1&serviceCode=dts&skuId=S1";

    #[test]
    fn a_purchase_parses_with_defaults_and_china_time() {
        let Callback::Create(order, details) = create(&format!(
            "{BASE}&expiredOn=2027-01-01+08%3A00%3A00&mobile=138"
        ))
        .unwrap() else {
            panic!("not a create");
        };
        assert_eq!(order.units, 1);
        assert_eq!(
            order.expires_at.unwrap().to_rfc3339(),
            "2027-01-01T00:00:00+00:00"
        );
        assert_eq!(details.mobile.as_deref(), Some("138"));
        assert_eq!(format_cst(order.expires_at.unwrap()), "2027-01-01 08:00:00");
    }

    #[test]
    fn each_bad_value_names_its_parameter() {
        let cases = [
            ("jdPin=pin&orderId=o&serviceCode=d&skuId=S", "orderBizId"),
            (&format!("{BASE}&accountNum=0") as &str, "accountNum"),
            (&format!("{BASE}&accountNum=1001"), "accountNum"),
            (&format!("{BASE}&accountNum=1.5"), "accountNum"),
            (&format!("{BASE}&expiredOn=2027-01-01"), "expiredOn"),
            (
                &format!("{BASE}&expiredOn=2027-02-30+00:00:00"),
                "expiredOn",
            ),
            (
                &BASE.replace("orderId=o-1", &format!("orderId={}", "o".repeat(200))),
                "orderId",
            ),
        ];
        for (query, name) in cases {
            let err = create(query).unwrap_err();
            assert_eq!(err.name, name, "{query}: {err}");
        }
    }

    #[test]
    fn optional_details_that_fail_their_checks_are_kept_cut_and_flagged() {
        let query = format!(
            "{BASE}&extraInfo=%7B%22key1%22:%221%22,%22key1%22,%222%22%7D&email={}\
             &template=a%0Ab&mobile=%FF%FE%00&additionInfo=%5B{}%5D",
            "e".repeat(EMAIL_CHARS_MAX + 1),
            "1,".repeat(JSON_BYTES_MAX)
        );
        let Callback::Create(order, details) = create(&query).unwrap() else {
            panic!("not a create");
        };
        assert_eq!(
            order.template, None,
            "an invalid template stays out of the event"
        );
        assert_eq!(details.template.as_deref(), Some("a\nb"));
        assert_eq!(details.mobile.as_deref(), Some("\u{FFFD}\u{FFFD}\u{FFFD}"));
        assert_eq!(details.email.unwrap().len(), EMAIL_CHARS_MAX);
        assert_eq!(
            details.extra_info.as_deref(),
            Some(r#"{"key1":"1","key1","2"}"#)
        );
        assert_eq!(details.addition_info.unwrap().len(), JSON_BYTES_MAX);
        let flagged: Vec<(&str, &str)> = details
            .invalid
            .iter()
            .map(|detail| (detail.name, detail.problem))
            .collect();
        assert_eq!(
            flagged,
            [
                ("mobile", "is not valid UTF-8"),
                ("email", "is longer than its limit"),
                ("extraInfo", "is not JSON"),
                ("additionInfo", "is longer than its limit"),
                ("template", "contains a control character"),
            ]
        );

        let Callback::Create(order, details) =
            create(&format!("{BASE}&template=t1&extraInfo=%7B%7D")).unwrap()
        else {
            panic!("not a create");
        };
        assert_eq!(order.template.as_deref(), Some("t1"));
        assert_eq!(details.template, None);
        assert_eq!(details.extra_info.as_deref(), Some("{}"));
        assert!(details.invalid.is_empty());

        let pairs =
            parse_query("instanceId=biz-1&orderId=o-2&accountNum=1&extraInfo=%7Bx").unwrap();
        let Callback::Dilate(_, details) = parse(Action::DilateInstance, &pairs).unwrap() else {
            panic!("not a dilate");
        };
        assert_eq!(details.extra_info.as_deref(), Some("{x"));
        assert_eq!(details.invalid[0].name, "extraInfo");
    }

    #[test]
    fn renew_needs_an_expiry_and_dilate_an_account_num() {
        let pairs = parse_query("instanceId=biz-1&orderId=o-2").unwrap();
        assert_eq!(
            parse(Action::RenewInstance, &pairs).unwrap_err().name,
            "expiredOn"
        );
        assert_eq!(
            parse(Action::DilateInstance, &pairs).unwrap_err().name,
            "accountNum"
        );
        let pairs = parse_query("instanceId=biz-1").unwrap();
        assert!(matches!(
            parse(Action::ReleaseInstance, &pairs),
            Ok(Callback::Release(_))
        ));
        assert_eq!(Action::parse(b"verify"), Some(Action::Verify));
        assert_eq!(Action::parse(b"deleteEverything"), None);
    }
}
