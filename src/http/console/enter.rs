//! `GET /console/enter?ticket=…`: where the marketplace's login-free link lands. The sign-in
//! ticket ([`crate::credentials::ticket`]) is exchanged for a session once: its nonce is recorded
//! as used, so that it signs in once across every `serve` process sharing the database.

use super::customer::{open_session, package};
use super::error::{db_error, html_response, pool_error, PageResult};
use super::i18n::lang_of;
use super::{pages, Console};
use crate::credentials::ticket::{self, Opened, TicketError};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use chrono::Utc;
use deadpool_postgres::GenericClient;
use projections::PackageStatus;
use serde::Deserialize;

#[derive(Deserialize)]
pub struct EnterQuery {
    /// Optional so that a link cut short gets the page saying how to come back, not an error.
    ticket: Option<String>,
}

pub async fn enter(
    console: web::Data<Console>,
    req: HttpRequest,
    query: web::Query<EnterQuery>,
) -> PageResult {
    let lang = lang_of(&req);
    let refused = |reason: &TicketError| {
        tracing::info!(%reason, "console: sign-in ticket refused");
        html_response(
            StatusCode::FORBIDDEN,
            pages::message(
                lang,
                &lang.t("ticket.title"),
                &lang.t("ticket.body"),
                None,
                pages::to_login(lang),
            ),
        )
    };
    let Some(keys) = &console.credentials else {
        return Ok(refused(&TicketError::Forged));
    };
    let opened = match ticket::open(keys, query.ticket.as_deref().unwrap_or(""), Utc::now()) {
        Ok(opened) => opened,
        Err(reason) => return Ok(refused(&reason)),
    };
    let client = console.pool.get().await.map_err(pool_error(lang))?;
    let Some(package) = package(&client, opened.instance_id.as_str(), lang).await? else {
        return Ok(refused(&TicketError::Forged));
    };
    // A ticket issued before its package was released opens nothing after.
    if package.status == PackageStatus::Released {
        return Ok(refused(&TicketError::Released));
    }
    if consume(&client, &opened).await.map_err(db_error(lang))? == Exchange::UsedBefore {
        return Ok(refused(&TicketError::Used));
    }
    open_session(&console, &client, keys, &package, "", lang).await
}

/// Whether a ticket was exchanged now or before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exchange {
    /// Its nonce is recorded as used now: it opens a session.
    Now,
    /// Some process recorded its nonce before: it opens nothing.
    UsedBefore,
}

/// Records the ticket's nonce as used.
pub async fn consume(
    client: &impl GenericClient,
    opened: &Opened,
) -> Result<Exchange, tokio_postgres::Error> {
    // Forgetting used nonces once their tickets expired keeps the table small; an expired ticket
    // is refused by its expiry anyway.
    client
        .execute(
            "DELETE FROM console_tickets_used WHERE expires_at < now() - interval '1 minute'",
            &[],
        )
        .await?;
    let inserted = client
        .execute(
            "INSERT INTO console_tickets_used (nonce, expires_at) VALUES ($1, $2)
             ON CONFLICT (nonce) DO NOTHING",
            &[&opened.nonce, &opened.expires_at],
        )
        .await?;
    Ok(if inserted == 1 {
        Exchange::Now
    } else {
        Exchange::UsedBefore
    })
}
