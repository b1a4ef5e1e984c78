//! HTTP routes, one file each.

pub mod cloud_order;
pub mod console_doc;
pub mod health;
pub mod landing;
pub mod ledger;
pub mod metrics;
pub mod openapi;
pub mod orders;
pub mod outbox;
pub mod reconciliation;
pub mod tasks;
pub mod traffic;

/// One route the application registers: its method and its actix path pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    /// Upper case, as on the wire: `GET`, `POST`, `DELETE`.
    pub method: &'static str,
    pub path: &'static str,
}

/// Declares a group of routes once: a function that registers them (on a `&mut ServiceConfig` or
/// a `Scope`, in the order written, since actix matches in order) and the list of them. The list
/// is what the API document is held against, so a route cannot be registered without being
/// listed, nor listed without being registered.
///
/// An entry is `METHOD "path" => handler;`. A `GET` also answers `HEAD`. After the entries, each
/// path gets one more resource taking every other method, answered by the `other methods`
/// handler (`async fn(HttpRequest, allow: String)`) with the path's methods for `Allow`: `405`,
/// never the `404` of a path that does not exist.
macro_rules! route_table {
    (
        $(#[$meta:meta])*
        fn $register:ident($target:ident: $target_type:ty), under $prefix:literal,
        listed in $table:ident, other methods $fallback:path;
        $( $method:ident $path:literal => $handler:path ; )*
    ) => {
        /// Every route registered by the function declared beside it, with its full path.
        pub const $table: &[$crate::http::routes::Registered] = &[
            $( $crate::http::routes::Registered {
                method: stringify!($method),
                path: concat!($prefix, $path),
            }, )*
        ];

        $(#[$meta])*
        fn $register($target: $target_type) -> $target_type {
            $( let $target = $target.route(
                $path,
                $crate::http::protocol::method_route(stringify!($method)).to($handler),
            ); )*
            let mut $target = $target;
            let entries = [$( (stringify!($method), $path) ),*];
            for (path, allow) in $crate::http::protocol::allowed_by_path(&entries) {
                $target = $target.route(
                    path,
                    actix_web::web::route().to(move |req: actix_web::HttpRequest| {
                        $fallback(req, allow.clone())
                    }),
                );
            }
            $target
        }
    };
}
pub(crate) use route_table;
