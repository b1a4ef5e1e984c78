//! What a callback answers, in the marketplace's own field names (DESIGN §3–4): `createInstance`
//! its `instanceId`, `appInfo` and `info`, or `instanceId: "0"` when it failed; every other action
//! `success` and a message.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every JSON reply of a callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum CallbackReply {
    /// `createInstance` succeeded.
    Created(Created),
    /// `createInstance` failed: `instanceId` is `"0"`.
    CreateFailed(CreateFailed),
    /// Every other action, whether it succeeded or not.
    Done(Done),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"instanceId": "dts-1", "appInfo": {"frontEndUrl": "https://dts.example.com/console", "adminUrl": "https://dts.example.com/console", "username": "jd_user", "authUrl": "https://dts.example.com/v1/cloud/order", "authCode": "7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c"}, "info": {"packageName": "DTS 500 GiB", "bytesGranted": "536870912000", "expiredOn": "2027-11-26 08:00:00"}})))]
pub struct Created {
    pub instance_id: String,
    pub app_info: AppInfo,
    pub info: PackageInfo,
}

/// Where the customer uses the package, and the credential that opens it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"frontEndUrl": "https://dts.example.com/console", "adminUrl": "https://dts.example.com/console", "username": "jd_user", "authUrl": "https://dts.example.com/v1/cloud/order", "authCode": null})))]
pub struct AppInfo {
    /// `<public_url>/console`: where the customer uses the package.
    pub front_end_url: String,
    /// The same console.
    pub admin_url: String,
    /// The buyer's `jdPin`.
    pub username: String,
    /// `<public_url>/v1/cloud/order`: the login-free entry, which the marketplace calls with
    /// `action=verify` (signed, with a fresh `timeStamp`) to sign the customer in.
    pub auth_url: String,
    /// `null` when no secret to derive it from is configured.
    pub auth_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"packageName": "DTS 500 GiB", "bytesGranted": "536870912000"})))]
pub struct PackageInfo {
    pub package_name: String,
    /// A decimal string: the marketplace reads numbers this large as text.
    #[schema(pattern = "^[0-9]+$", examples("536870912000"))]
    pub bytes_granted: String,
    /// China Standard Time (`yyyy-MM-dd HH:mm:ss`); left out for a package that does not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_on: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"instanceId": "0", "message": "skuId FW_GOODS-1 is not in the catalog"})))]
pub struct CreateFailed {
    /// Always `"0"`.
    pub instance_id: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"success": true, "message": "renewed", "authCode": "7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c"})))]
pub struct Done {
    pub success: bool,
    pub message: String,
    /// The order's credential again, on the actions that keep the order usable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_code: Option<String>,
}
