//! `GET /v1/cloud/order`: the replies the JD Cloud marketplace expects (DESIGN §3–4), in its own
//! field names.

use serde::{Deserialize, Serialize};

/// Every JSON reply of a callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CallbackReply {
    /// `createInstance` succeeded.
    Created(Created),
    /// `createInstance` failed: `instanceId` is `"0"`.
    CreateFailed(CreateFailed),
    /// Every other action, whether it succeeded or not.
    Done(Done),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    pub instance_id: String,
    pub app_info: AppInfo,
    pub info: PackageInfo,
}

/// Where the customer uses the package, and the credential that opens it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppInfo {
    pub front_end_url: String,
    pub admin_url: String,
    pub username: String,
    pub auth_url: String,
    /// `null` when no secret to derive it from is configured.
    pub auth_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageInfo {
    pub package_name: String,
    /// A decimal string: the marketplace reads numbers this large as text.
    pub bytes_granted: String,
    /// China Standard Time; left out for a package that does not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_on: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateFailed {
    /// Always `"0"`.
    pub instance_id: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Done {
    pub success: bool,
    pub message: String,
    /// The order's credential again, on the actions that keep the order usable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_code: Option<String>,
}
