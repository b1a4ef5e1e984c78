//! `GET /v1/cloud/order`: the marketplace's callback endpoint.

use crate::http::api::marketplace::{CallbackParams, CallbackReply};
use crate::http::routes::landing::wants_html;
use crate::http::state::{AppState, RequestId};
use crate::marketplace::{self, Reply};
use actix_web::http::header::LOCATION;
use actix_web::{web, HttpRequest, HttpResponse};

/// Whether the callback is a `verify` (the login-free link), however its query is ordered.
fn is_verify(query: &str) -> bool {
    query.split('&').any(|pair| pair == "action=verify")
}

/// The JD Cloud marketplace's order callback.
///
/// One GET per order event, the event named by `action`, every parameter in the query. This is the marketplace's contract, not ours: field
/// names are the marketplace's, and there is no bearer token.
///
/// **Token.** Every parameter except `token`, URL-decoded (`+` is a space, `%XX` a byte), sorted by
/// name in byte order, joined as `name=value` with `&` (empty values included as `name=`), then
/// `&key=<ISV key>`: the MD5 hex digest of that string must equal `token` (any hex case).
/// Parameters this service does not use (`appCode`, say) are signed like the others and otherwise
/// ignored. A missing or wrong token, a repeated parameter name or no configured key is `403` and
/// records nothing. The query may be 64 KiB.
///
/// **Replies.** `createInstance` answers `Created` (`instanceId`, `appInfo`, `info`), its failures
/// `CreateFailed` (`instanceId: "0"`); every other action answers `Done` (`success`), also when it
/// fails. `verify` with a `timeStamp` within `verify_window_s` redirects the browser to the
/// console with a single-use sign-in ticket, once per link: the same link again is `403`. The marketplace retries any failure (it waits about
/// 10 s for `createInstance`); every action is idempotent, and a retry gets the identical reply.
/// A `verify` from a browser (`Accept` ranking `text/html` above JSON) that signs no one in is
/// answered with a page saying why and how to come back, in the browser's language, under the
/// same status.
#[utoipa::path(get, path = "/v1/cloud/order", tag = "marketplace", params(CallbackParams),
    responses(
        (status = 200, description = "Done: `Created` for `createInstance`, `Done` otherwise", body = CallbackReply),
        (status = 302, description = "`verify`: to `<public_url>/console/enter?ticket=…`",
            headers(("location" = String, description = "The console sign-in URL"))),
        (status = 400, description = "A bad parameter (the message names it), an unknown action, or a malformed query", content((CallbackReply = "application/json"), (String = "text/html"))),
        (status = 403, description = "A missing or wrong token, a repeated parameter, no configured key, or a `verify` link used already", content((CallbackReply = "application/json"), (String = "text/html"))),
        (status = 404, description = "Unknown `instanceId`", content((CallbackReply = "application/json"), (String = "text/html"))),
        (status = 409, description = "An `orderBizId` or `orderId` reused with other parameters, or a released package", content((CallbackReply = "application/json"), (String = "text/html"))),
        (status = 422, description = "A SKU not in the catalog: add it, and the marketplace's next retry succeeds", body = CallbackReply),
        (status = 503, description = "Database unavailable: nothing was recorded, the retry succeeds", content((CallbackReply = "application/json"), (String = "text/html"))),
    ))]
pub async fn cloud_order(
    req: HttpRequest,
    state: web::Data<AppState>,
    request_id: RequestId,
) -> HttpResponse {
    match marketplace::handle(&state.marketplace(), req.query_string(), &request_id.0).await {
        // The marketplace opens `verify` in the customer's browser: a refusal is a page for a
        // person, in their language, not the JSON the marketplace's own calls get.
        Reply::Json(status, _) if is_verify(req.query_string()) && wants_html(&req) => {
            crate::http::console::sign_in_link_refused(&req, status)
        }
        Reply::Json(status, body) => HttpResponse::build(status).json(body),
        Reply::Redirect(location) => HttpResponse::Found()
            .insert_header((LOCATION, location))
            .finish(),
    }
}
