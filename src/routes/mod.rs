//! HTTP routes, one file each.

pub mod body;
pub mod cloud_order;
pub mod health;
pub mod landing;
pub mod ledger;
pub mod metrics;
pub mod openapi;
pub mod orders;
pub mod outbox;
pub mod page;
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
/// An entry is `METHOD "path" => handler;`, or `METHOD "path" => handler, else fallback;` for a
/// resource that answers every other method with `fallback` instead of trying the next routes.
macro_rules! route_table {
    (
        $(#[$meta:meta])*
        fn $register:ident($target:ident: $target_type:ty), under $prefix:literal,
        listed in $table:ident;
        $( $method:ident $path:literal => $handler:path $(, else $fallback:path)? ; )*
    ) => {
        /// Every route registered by the function declared beside it, with its full path.
        pub const $table: &[$crate::routes::Registered] = &[
            $( $crate::routes::Registered {
                method: stringify!($method),
                path: concat!($prefix, $path),
            }, )*
        ];

        $(#[$meta])*
        fn $register($target: $target_type) -> $target_type {
            $( let $target = $crate::routes::route_table!(
                @one $target, $method, $path, $handler $(, $fallback)?
            ); )*
            $target
        }
    };
    (@one $target:ident, $method:ident, $path:literal, $handler:path) => {
        $target.route(
            $path,
            actix_web::web::method(actix_web::http::Method::$method).to($handler),
        )
    };
    (@one $target:ident, $method:ident, $path:literal, $handler:path, $fallback:path) => {
        $target.service(
            actix_web::web::resource($path)
                .route(actix_web::web::method(actix_web::http::Method::$method).to($handler))
                .default_service(actix_web::web::to($fallback)),
        )
    };
}
pub(crate) use route_table;
