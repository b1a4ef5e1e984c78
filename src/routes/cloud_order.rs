//! `GET /v1/cloud/order`: the marketplace's callback endpoint.

use crate::marketplace::{self, Reply};
use crate::state::{AppState, RequestId};
use actix_web::http::header::LOCATION;
use actix_web::{web, HttpRequest, HttpResponse};

pub async fn cloud_order(
    req: HttpRequest,
    state: web::Data<AppState>,
    request_id: RequestId,
) -> HttpResponse {
    match marketplace::handle(&state.marketplace(), req.query_string(), &request_id.0).await {
        Reply::Json(status, body) => HttpResponse::build(status).json(body),
        Reply::Redirect(location) => HttpResponse::Found()
            .insert_header((LOCATION, location))
            .finish(),
    }
}
