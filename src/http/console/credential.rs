//! `GET|POST /console/packages/{id}/credential`: the customer replaces a package's order
//! credential (a code seen in a log or a shared screen). The old code stops working at once, in
//! every process; the sessions it opened end, except the one asking; the new code is shown once.

use super::customer::{
    command_refused, metadata, own_page, own_post, refused, signed_in_page, Own,
};
use super::error::PageResult;
use super::i18n::Lang;
use super::pages::{segment, titled, SignedIn};
use super::Console;
use crate::ledger;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use maud::html;
use projections::Package;
use serde::Deserialize;

/// The form that asks, with what the rotation does.
pub async fn form(
    console: web::Data<Console>,
    req: HttpRequest,
    path: web::Path<String>,
) -> PageResult {
    own_page(&console, &req, &path, async |own: Own<Package>| {
        let body = page(
            own.lang,
            &own.customer.who(),
            own.item.instance_id.as_str(),
            None,
        );
        Ok(own.show(&console, body))
    })
    .await
}

#[derive(Deserialize)]
pub struct RotateForm {
    csrf: String,
}

pub async fn submit(
    console: web::Data<Console>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<RotateForm>,
) -> PageResult {
    own_post(
        &console,
        &req,
        &path,
        &form.csrf,
        async |own: Own<Package>| {
            let Own {
                lang,
                client,
                customer,
                item: package,
            } = own;
            drop(client);
            // Without a secret nobody can be signed in, so this cannot be reached; answered anyway.
            let Some(credentials) = &console.credentials else {
                let text = lang.t("login.unavailable");
                let status = StatusCode::SERVICE_UNAVAILABLE;
                return Ok(refused(&console, &customer, lang, status, &text));
            };
            let keep = customer.session.hash();
            let rotated = ledger::orders::rotate_credential(
                &console.ledger,
                &package.instance_id,
                Some(&keep),
                &metadata(&req, &customer),
            )
            .await;
            match rotated {
                Ok(rotated) => {
                    tracing::info!(
                        instance_id = %package.instance_id,
                        generation = rotated.generation,
                        sessions_ended = rotated.sessions_ended,
                        "console: order credential rotated by its customer"
                    );
                    let code = credentials.auth_code_at(&package.instance_id, rotated.generation);
                    let id = package.instance_id.as_str();
                    let body = page(lang, &customer.who(), id, Some(&code));
                    Ok(signed_in_page(&console, &customer, StatusCode::OK, body))
                }
                Err(error) => command_refused(&console, &customer, lang, error),
            }
        },
    )
    .await
}

/// The rotation page: the form, or (with `code`) the new credential, shown once.
fn page(lang: Lang, who: &SignedIn<'_>, id: &str, code: Option<&str>) -> String {
    titled(
        lang,
        who,
        &lang.tf("credential.title", &[("instance", id)]),
        html! {
            @match code {
                None => {
                    p.notice #credential-intro { (lang.t("credential.intro")) }
                    form.card method="post"
                        action={ "/console/packages/" (segment(id)) "/credential" } {
                        input type="hidden" name="csrf" value=(who.csrf);
                        button.danger #credential-submit type="submit" {
                            (lang.t("credential.submit"))
                        }
                        " " a href={ "/console/packages/" (segment(id)) } {
                            (lang.t("common.cancel"))
                        }
                    }
                }
                Some(code) => {
                    p.banner #credential-done role="status" { (lang.t("credential.done")) }
                    p { (lang.t("credential.new")) " " code #credential-code { (code) } }
                    p { a href={ "/console/packages/" (segment(id)) } { (lang.t("common.back")) } }
                }
            }
        },
    )
}
