//! Exchanging a sign-in ticket ([`crate::credentials::ticket`]): its nonce is recorded as used,
//! so that the ticket signs in once across every `serve` process sharing the database.

use crate::credentials::ticket::{Opened, TicketError};
use deadpool_postgres::GenericClient;

/// Records the ticket's nonce as used; `Err(Used)` when some process did so before.
pub async fn consume(
    client: &impl GenericClient,
    opened: &Opened,
) -> Result<Result<(), TicketError>, tokio_postgres::Error> {
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
        Ok(())
    } else {
        Err(TicketError::Used)
    })
}
