//! `GET|POST /console/packages/{id}/credential`: the customer replaces a package's order
//! credential (a code seen in a log or a shared screen). The old code stops working at once, in
//! every process; the sessions it opened end, except the one asking; the new code is shown once.

use super::pages::{layout, segment, SignedIn};
use super::{
    csrf_ok, csrf_refused, lang_of, metadata, package_context, pool_error, signed_in_page, Console,
    PageResult,
};
use crate::http::console::i18n::Lang;
use crate::ledger;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use maud::html;
use serde::Deserialize;

/// The form that asks, with what the rotation does.
pub async fn form(
    console: web::Data<Console>,
    req: HttpRequest,
    path: web::Path<String>,
) -> PageResult {
    let lang = lang_of(&req);
    let client = console.pool.get().await.map_err(pool_error(lang))?;
    let (customer, package) = match package_context(&console, &req, &client, &path, lang).await? {
        Ok(found) => found,
        Err(answer) => return Ok(answer),
    };
    let body = page(lang, &customer.who(), package.instance_id.as_str(), None);
    Ok(signed_in_page(&console, &customer, StatusCode::OK, body))
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
    let lang = lang_of(&req);
    let client = console.pool.get().await.map_err(pool_error(lang))?;
    let (customer, package) = match package_context(&console, &req, &client, &path, lang).await? {
        Ok(found) => found,
        Err(answer) => return Ok(answer),
    };
    if !csrf_ok(&console, &req, &customer, &form.csrf) {
        return Ok(csrf_refused(&console, &customer, lang));
    }
    drop(client);
    // Without a secret nobody can be signed in, so this cannot be reached; answered anyway.
    let Some(credentials) = &console.credentials else {
        let body = super::pages::message(
            lang,
            &lang.t("refused.title"),
            &lang.t("login.unavailable"),
            Some(&customer.who()),
            html! { p { a href="/console" { (lang.t("common.cancel")) } } },
        );
        return Ok(signed_in_page(
            &console,
            &customer,
            StatusCode::SERVICE_UNAVAILABLE,
            body,
        ));
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
            let body = page(
                lang,
                &customer.who(),
                package.instance_id.as_str(),
                Some(&code),
            );
            Ok(signed_in_page(&console, &customer, StatusCode::OK, body))
        }
        Err(error) => super::command_refused(&console, &customer, lang, error),
    }
}

/// The rotation page: the form, or (with `code`) the new credential, shown once.
fn page(lang: Lang, who: &SignedIn<'_>, id: &str, code: Option<&str>) -> String {
    let title = lang.tf("credential.title", &[("instance", id)]);
    layout(
        lang,
        &title,
        Some(who),
        "overview",
        html! {
            h1 { (title) }
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
