//! `GET /v1/cloud/order`: the replies the JD Cloud marketplace expects (DESIGN §3–4), in its own
//! field names.

use serde::Deserialize;

/// The replies, which the callbacks build: the protocol's own types, documented as they are.
pub use crate::marketplace::reply::{
    AppInfo, CallbackReply, CreateFailed, Created, Done, PackageInfo,
};

/// The `action` of a callback: the protocol's own type, documented as it is.
pub use crate::marketplace::params::Action as CallbackAction;

/// The query of a callback, as the marketplace sends it. Which parameters an action uses is said
/// on each; parameters an action does not use are ignored, but the token covers them too. Ids
/// follow the rules of `projections::ids` (the document states them on each id); times are
/// `yyyy-MM-dd HH:mm:ss` China Standard Time.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct CallbackParams {
    pub action: CallbackAction,
    /// MD5 hex of every other parameter, URL-decoded, sorted by name in byte order, joined as
    /// `name=value` with `&` (empty values included as `name=`), followed by `&key=<ISV key>`.
    /// Compared in constant time, before anything else is looked at.
    #[param(pattern = "^[0-9a-fA-F]{32}$")]
    pub token: String,
    /// `createInstance`: the purchase's id, which becomes the package's `instanceId`.
    pub order_biz_id: Option<String>,
    /// Every action but `createInstance`: the package.
    pub instance_id: Option<String>,
    /// `createInstance`: the buyer.
    pub jd_pin: Option<String>,
    /// `createInstance`, `renewInstance`, `upgradeInstance`, `dilateInstance`: the marketplace
    /// order, as the notify interface's current revision names it. This or `orderId` (or both)
    /// is required; with `instanceId`, what makes a renewal, upgrade or dilation happen once.
    #[param(example = "529107885755794112")]
    pub order_number: Option<String>,
    /// Deprecated by the marketplace in favour of `orderNumber`, still accepted: the order, on
    /// the same actions. A renewal recorded under `orderId` alone is matched by its retry that
    /// also carries `orderNumber`.
    pub order_id: Option<String>,
    /// `createInstance`: at most 128 characters.
    pub service_code: Option<String>,
    /// `createInstance` (the SKU bought), `upgradeInstance` (the new SKU).
    pub sku_id: Option<String>,
    /// `createInstance` (default 1), `dilateInstance` (required): 1 to 1000 units.
    pub account_num: Option<u32>,
    /// `createInstance` (optional: no expiry), `renewInstance` (required).
    #[param(example = "2027-11-26 08:00:00")]
    pub expired_on: Option<String>,
    /// `verify`: must be within `verify_window_s` of now.
    #[param(example = "2026-11-26 08:00:00")]
    pub time_stamp: Option<String>,
    /// `createInstance`: optional, at most 32 characters; kept erasable, never in the ledger.
    pub mobile: Option<String>,
    /// `createInstance`: optional, at most 254 characters; kept erasable, never in the ledger.
    pub email: Option<String>,
    /// `createInstance`: optional, at most 128 characters, no control characters.
    pub template: Option<String>,
    /// `createInstance`, `upgradeInstance`, `dilateInstance`: optional JSON of at most 4096 bytes;
    /// kept erasable, never in the ledger.
    pub extra_info: Option<String>,
    /// `createInstance`: optional JSON of at most 4096 bytes; kept erasable, never in the ledger.
    pub addition_info: Option<String>,
}
