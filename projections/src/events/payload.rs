//! How an event becomes `events.payload` and back: one list of the event types drives the type
//! name, the payload encoding and the decoder, so the three can never disagree.

use super::*;

/// How an event's body becomes `events.payload` and back. Every body but a traffic event's is
/// its serde form, the same in every version ([`Event::event_version`] tells them apart by their
/// fields); a traffic event's two versions spell the same fields differently, and version 2
/// takes its package from the row's stream.
pub(super) trait Body: Sized {
    fn to_payload(&self) -> serde_json::Result<serde_json::Value>;
    fn from_payload(version: i32, stream_id: &str, payload: &[u8]) -> serde_json::Result<Self>;
}

/// A stored event could not be turned back into an [`Event`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {event_type:?} version {event_version}")]
    UnknownType {
        event_type: String,
        event_version: i32,
    },
    #[error("{event_type} payload does not match version {event_version}: {source}")]
    Payload {
        event_type: &'static str,
        event_version: i32,
        source: serde_json::Error,
    },
}

/// One list of (variant, type name) drives the type name, the payload encoding and the decoder, so
/// the three can never disagree.
macro_rules! event_catalog {
    ($($variant:ident),* $(,)?) => {
        /// Every event type this version can decode, with the versions it knows.
        pub const EVENT_TYPES: &[&str] = &[$(stringify!($variant)),*];

        impl Event {
            pub fn event_type(&self) -> &'static str {
                match self {
                    $(Event::$variant(_) => stringify!($variant),)*
                }
            }

            /// The payload as stored in `events.payload`.
            pub fn payload(&self) -> serde_json::Value {
                let encoded = match self {
                    $(Event::$variant(body) => body.to_payload(),)*
                };
                // Serialising plain structs of strings, integers and options cannot fail.
                encoded.expect("event payloads always serialise")
            }

            /// Decodes a payload straight from its JSON text (no intermediate `Value`), as stored
            /// in the stream `stream_id`.
            pub fn decode_json(
                event_type: &str,
                event_version: i32,
                stream_id: &str,
                payload: &[u8],
            ) -> Result<Event, DecodeError> {
                match (event_type, event_version) {
                    $((stringify!($variant), version)
                        if (1..=version_max(stringify!($variant))).contains(&version) =>
                        $variant::from_payload(version, stream_id, payload)
                        .map(Event::$variant)
                        // Each version has its own shape: a payload of another one is refused. (A
                        // traffic event's versions differ in spelling only, which its decoder
                        // checks.)
                        .and_then(|event| if event.event_version() != event_version
                            && !matches!(event, Event::TrafficConsumed(_))
                        {
                            Err(serde::de::Error::custom(
                                "the payload's fields belong to another version",
                            ))
                        } else if event.is_grant() && event.order_ref().is_none() {
                            Err(serde::de::Error::custom(
                                "a grant names neither orderNumber nor orderId",
                            ))
                        } else {
                            Ok(event)
                        })
                        .map_err(|source| DecodeError::Payload {
                            event_type: stringify!($variant),
                            event_version,
                            source,
                        }),)*
                    _ => Err(DecodeError::UnknownType {
                        event_type: event_type.to_owned(),
                        event_version,
                    }),
                }
            }

            pub fn decode(
                event_type: &str,
                event_version: i32,
                stream_id: &str,
                payload: serde_json::Value,
            ) -> Result<Event, DecodeError> {
                let text = serde_json::to_vec(&payload).expect("a JSON value serialises");
                Event::decode_json(event_type, event_version, stream_id, &text)
            }
        }
    };
}

/// Every event type: those whose body is its serde form, and those with their own
/// [`Body`] (a traffic event, whose version 2 spells its keys differently and takes its package
/// from the stream). One list, so the catalog and the bodies can never disagree.
macro_rules! catalog {
    (plain: [$($plain:ident),* $(,)?], own: [$($own:ident),* $(,)?] $(,)?) => {
        $(impl Body for $plain {
            fn to_payload(&self) -> serde_json::Result<serde_json::Value> {
                serde_json::to_value(self)
            }

            fn from_payload(_: i32, _: &str, payload: &[u8]) -> serde_json::Result<Self> {
                serde_json::from_slice(payload)
            }
        })*

        event_catalog!($($plain,)* $($own,)*);
    };
}

catalog!(
    plain: [
        OrderCreated,
        OrderRenewed,
        OrderUpgraded,
        OrderDilated,
        OrderExpired,
        OrderReleased,
        OrderBalanceLow,
        OrderRunwayShort,
        OrderExpiryHeld,
        OrderCredentialRotated,
        LedgerRestoreAccepted,
        TaskCreated,
        TaskRebound,
        TaskStopped,
        TaskResumed,
        TaskDestroyed,
    ],
    own: [TrafficConsumed],
);

/// The newest payload version of an event type this code decodes (older ones decode too); the
/// version of a decoded event must match the one it was stored with ([`Event::event_version`]).
fn version_max(event_type: &str) -> i32 {
    match event_type {
        "OrderUpgraded" => 3,
        "OrderCreated" | "OrderRenewed" | "OrderDilated" | "OrderExpired" | "TrafficConsumed" => 2,
        _ => 1,
    }
}
