//! The console's pages and forms in the API document. They answer HTML (a stylesheet, a CSV
//! statement, or a redirect) rather than typed JSON, so they are described here, one entry per
//! route of `crate::http::console::CONSOLE_ROUTES` (a test holds the two lists together): what each
//! is for, its path parameters and form fields, and every status it answers.

use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, RefOr, Required, ResponseBuilder};
use utoipa::Modify;

/// One answer of a console route: its status, what it means, and its content type (`None`: no
/// body, such as a redirect).
type Answer = (u16, &'static str, Option<&'static str>);

/// What a parameter holds.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Text (an id gets the id's rules from the document's id constraints).
    Text,
    /// A whole number, 0 or more.
    Count,
}

/// One path or query parameter: its name, where, what it is, and what it holds.
type Param = (&'static str, ParameterIn, &'static str, Kind);

pub struct ConsolePage {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub params: &'static [Param],
    /// The form's fields (`application/x-www-form-urlencoded`), each required.
    pub form: &'static [(&'static str, &'static str)],
    pub answers: &'static [Answer],
}

const HTML: Option<&str> = Some("text/html");

/// A page for a signed-in customer, or the redirect to the sign-in form.
const PAGE: Answer = (200, "The page", HTML);
const TO_SIGN_IN: Answer = (
    303,
    "No open session: to `/console/login`, with `next` (this page) and `why`",
    None,
);
const NOT_FOUND: Answer = (
    404,
    "Not the customer's (another customer's is answered like an unknown one)",
    HTML,
);
const UNAVAILABLE: Answer = (503, "The database is unavailable: a page saying so", HTML);
const FORGED: Answer = (
    403,
    "Not posted from this site's own form (the CSRF token, `Origin` or `Sec-Fetch-Site`)",
    HTML,
);
const NOT_A_FORM: Answer = (415, "The body is not a form", HTML);
const BAD_FORM: Answer = (400, "A field is missing or unreadable", HTML);
const TOO_LARGE: Answer = (413, "The form is larger than 4 KiB", HTML);
const BAD_QUERY: Answer = (400, "A query parameter cannot be read", HTML);

/// What a task's form (renew, destroy) answers when posted.
const TASK_POSTED: &[Answer] = &[
    (
        303,
        "Done: to the overview, which says what was done (a `dts_flash` cookie); no session: to \
         `/console/login` with `why=expired`",
        None,
    ),
    BAD_FORM,
    FORGED,
    NOT_FOUND,
    (
        409,
        "The task changed since the form, or the ledger refused the change",
        HTML,
    ),
    TOO_LARGE,
    NOT_A_FORM,
    UNAVAILABLE,
];

const INSTANCE: Param = ("instance_id", ParameterIn::Path, "The package", Kind::Text);
const TASK: Param = ("task_id", ParameterIn::Path, "The DTS task", Kind::Text);
const CSRF: (&str, &str) = ("csrf", "The token of the form the page served");
const VERSION: (&str, &str) = (
    "version",
    "The task's stream version the form was made at: a task changed since is not touched",
);

/// Every console route, in the order of `CONSOLE_ROUTES`.
pub const CONSOLE_PAGES: &[ConsolePage] = &[
    ConsolePage {
        method: "GET",
        path: "/console",
        summary: "The overview: the signed-in customer's packages and tasks.",
        params: &[],
        form: &[],
        answers: &[PAGE, TO_SIGN_IN, UNAVAILABLE],
    },
    ConsolePage {
        method: "GET",
        path: "/console/",
        summary: "The overview.",
        params: &[],
        form: &[],
        answers: &[PAGE, TO_SIGN_IN, UNAVAILABLE],
    },
    ConsolePage {
        method: "GET",
        path: "/console/console.css",
        summary: "The console's stylesheet.",
        params: &[],
        form: &[],
        answers: &[(200, "The stylesheet", Some("text/css"))],
    },
    ConsolePage {
        method: "GET",
        path: "/console/enter",
        summary: "Signs in with the single-use `ticket` of a marketplace `verify`, then \
                  redirects to the overview.",
        params: &[(
            "ticket",
            ParameterIn::Query,
            "The ticket of the link; without one the page says how to come back",
            Kind::Text,
        )],
        form: &[],
        answers: &[
            (
                303,
                "Signed in: to `/console`, with the session cookie",
                None,
            ),
            (
                403,
                "A ticket malformed, forged, expired, used already or of a released package",
                HTML,
            ),
            BAD_QUERY,
            UNAVAILABLE,
        ],
    },
    ConsolePage {
        method: "GET",
        path: "/console/login",
        summary: "The sign-in form (instanceId and authCode), with its `dts_login` cookie.",
        params: &[
            (
                "next",
                ParameterIn::Query,
                "The console page to come back to after signing in (another value: the overview)",
                Kind::Text,
            ),
            (
                "why",
                ParameterIn::Query,
                "Why the form is shown: `expired` (a form posted after its session ended: \
                 nothing was done), `ended` (a page asked for after it ended), `signed_out`",
                Kind::Text,
            ),
        ],
        form: &[],
        answers: &[(200, "The form", HTML)],
    },
    ConsolePage {
        method: "POST",
        path: "/console/login",
        summary: "Signs in with an order's instanceId and authCode (of its current credential) \
                  and the csrf token of the form `GET /console/login` served with its \
                  `dts_login` cookie.",
        params: &[],
        form: &[
            CSRF,
            ("instanceId", "The package"),
            ("authCode", "Its order credential"),
            (
                "next",
                "The console page to come back to (the form's hidden field; empty: the overview)",
            ),
        ],
        answers: &[
            (
                303,
                "Signed in: to `next` when it is a console page, else `/console`, with the \
                 session cookie",
                None,
            ),
            BAD_FORM,
            (
                401,
                "A wrong pair or an unknown instance, alike, after 500 ms (with \
                 `WWW-Authenticate`)",
                HTML,
            ),
            (
                403,
                "Not posted from this site's own form, or a released package",
                HTML,
            ),
            TOO_LARGE,
            NOT_A_FORM,
            (
                429,
                "Too many failures from this address, or on this instance from it",
                HTML,
            ),
            (
                503,
                "Sign-ins hold their share of the pool (`Retry-After`), or the database is \
                 unavailable",
                HTML,
            ),
        ],
    },
    ConsolePage {
        method: "POST",
        path: "/console/logout",
        summary: "Signs out: the session ends in every process.",
        params: &[],
        form: &[CSRF],
        answers: &[
            (303, "To `/console/login?why=signed_out`", None),
            BAD_FORM,
            FORGED,
            TOO_LARGE,
            NOT_A_FORM,
            UNAVAILABLE,
        ],
    },
    ConsolePage {
        method: "GET",
        path: "/console/lang/{code}",
        summary: "Switches the language, remembered in a cookie, and goes back (`next=login`: \
                  to the sign-in form).",
        params: &[
            (
                "code",
                ParameterIn::Path,
                "The language: `zh-CN` or `en` (another code changes nothing)",
                Kind::Text,
            ),
            (
                "next",
                ParameterIn::Query,
                "`login`: back to the sign-in form; anything else: the overview",
                Kind::Text,
            ),
        ],
        form: &[],
        answers: &[
            (
                303,
                "Back to the console (an unknown code changes nothing)",
                None,
            ),
            BAD_QUERY,
        ],
    },
    ConsolePage {
        method: "GET",
        path: "/console/packages/{instance_id}",
        summary: "A package: balance, usage, grants, statement (`days`: 30 or 90).",
        params: &[
            INSTANCE,
            (
                "days",
                ParameterIn::Query,
                "The usage window: 30 or 90 days (another number shows 30)",
                Kind::Count,
            ),
        ],
        form: &[],
        answers: &[PAGE, TO_SIGN_IN, BAD_QUERY, NOT_FOUND, UNAVAILABLE],
    },
    ConsolePage {
        method: "GET",
        path: "/console/packages/{instance_id}/statement.csv",
        summary: "A package's statement as CSV (UTF-8 with a byte order mark).",
        params: &[INSTANCE],
        form: &[],
        answers: &[
            (200, "The statement", Some("text/csv")),
            TO_SIGN_IN,
            NOT_FOUND,
            UNAVAILABLE,
        ],
    },
    ConsolePage {
        method: "GET",
        path: "/console/tasks/{task_id}/renew",
        summary: "The form that moves a task to another package of the account (续费).",
        params: &[TASK],
        form: &[],
        answers: &[PAGE, TO_SIGN_IN, NOT_FOUND, UNAVAILABLE],
    },
    ConsolePage {
        method: "POST",
        path: "/console/tasks/{task_id}/renew",
        summary: "Moves a task to another package of the account (续费).",
        params: &[TASK],
        form: &[CSRF, VERSION, ("to", "The package to draw from")],
        answers: TASK_POSTED,
    },
    ConsolePage {
        method: "GET",
        path: "/console/tasks/{task_id}/destroy",
        summary: "The form that destroys a task, saying its data is gone for good.",
        params: &[TASK],
        form: &[],
        answers: &[PAGE, TO_SIGN_IN, NOT_FOUND, UNAVAILABLE],
    },
    ConsolePage {
        method: "POST",
        path: "/console/tasks/{task_id}/destroy",
        summary: "Destroys a task for good.",
        params: &[TASK],
        form: &[CSRF, VERSION],
        answers: TASK_POSTED,
    },
    ConsolePage {
        method: "GET",
        path: "/console/packages/{instance_id}/credential",
        summary: "The form that replaces a package's order credential.",
        params: &[INSTANCE],
        form: &[],
        answers: &[PAGE, TO_SIGN_IN, NOT_FOUND, UNAVAILABLE],
    },
    ConsolePage {
        method: "POST",
        path: "/console/packages/{instance_id}/credential",
        summary: "Replaces a package's order credential; the page shows the new one once.",
        params: &[INSTANCE],
        form: &[CSRF],
        answers: &[
            (200, "Replaced: the new credential, shown once", HTML),
            (303, "No open session: to `/console/login`", None),
            BAD_FORM,
            FORGED,
            NOT_FOUND,
            (409, "Refused: a released package", HTML),
            TOO_LARGE,
            NOT_A_FORM,
            UNAVAILABLE,
        ],
    },
];

fn schema_of(kind: Kind) -> Schema {
    let schema = match kind {
        Kind::Text => ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)),
        Kind::Count => ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Integer))
            .minimum(Some(0))
            .maximum(Some(u32::MAX)),
    };
    Schema::Object(schema.build())
}

/// Adds the console's routes to the document.
pub struct ConsolePages;

impl Modify for ConsolePages {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for page in CONSOLE_PAGES {
            let method = match page.method {
                "POST" => HttpMethod::Post,
                _ => HttpMethod::Get,
            };
            let mut operation = OperationBuilder::new()
                .tag("console")
                .summary(Some(page.summary));
            for (name, place, description, kind) in page.params {
                let required = match place {
                    ParameterIn::Path => Required::True,
                    _ => Required::False,
                };
                operation = operation.parameter(
                    ParameterBuilder::new()
                        .name(*name)
                        .parameter_in(place.clone())
                        .required(required)
                        .description(Some(*description))
                        .schema(Some(schema_of(*kind))),
                );
            }
            if !page.form.is_empty() {
                let mut form = ObjectBuilder::new().schema_type(SchemaType::Type(Type::Object));
                for (field, description) in page.form {
                    form = form
                        .property(
                            *field,
                            ObjectBuilder::new()
                                .schema_type(SchemaType::Type(Type::String))
                                .description(Some(*description)),
                        )
                        .required(*field);
                }
                operation = operation.request_body(Some(
                    RequestBodyBuilder::new()
                        .content(
                            "application/x-www-form-urlencoded",
                            ContentBuilder::new()
                                .schema(Some(RefOr::T(Schema::Object(form.build()))))
                                .build(),
                        )
                        .required(Some(Required::True))
                        .build(),
                ));
            }
            for (status, description, content_type) in page.answers {
                let mut answer = ResponseBuilder::new().description(*description);
                if let Some(content_type) = content_type {
                    answer = answer.content(*content_type, ContentBuilder::new().build());
                }
                if (300..400).contains(status) {
                    answer = answer.header(
                        "location",
                        HeaderBuilder::new()
                            .schema(schema_of(Kind::Text))
                            .description(Some("Where the browser goes next"))
                            .build(),
                    );
                }
                operation = operation.response(status.to_string(), answer.build());
            }
            let item = PathItem::new(method, operation.build());
            // Two methods on one path are two items: merge them, as the generated paths are.
            match openapi.paths.paths.get_mut(page.path) {
                Some(existing) => existing.merge_operations(item),
                None => {
                    openapi.paths.paths.insert(page.path.to_owned(), item);
                }
            }
        }
    }
}
