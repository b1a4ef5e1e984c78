//! JSON request bodies, read only once the caller has been authenticated.
//!
//! actix-web extracts every handler argument before the handler runs, so a `web::Json` argument
//! would read, inflate and parse the whole body for a caller without a token. Handlers take their
//! role's extractor first ([`crate::http::auth`]) and the raw `web::Payload` (which reads nothing
//! by itself), then call [`read_json`]: only an authenticated caller's body is read.

use crate::http::error::ApiError;
use actix_web::dev::Decompress;
use actix_web::error::PayloadError;
use actix_web::http::header::{ContentEncoding, CONTENT_ENCODING, CONTENT_LENGTH};
use actix_web::http::StatusCode;
use actix_web::{mime, web, HttpMessage, HttpRequest};
use futures_util::{stream, StreamExt};
use serde::de::DeserializeOwned;

/// Largest piece of a gzip body fed to the inflater at once. Inflation can multiply a piece about
/// a thousandfold, and the limit is checked between pieces: 1 KiB keeps what one piece can add
/// beyond the limit to about 1 MiB, and stays below the size actix inflates off the worker thread.
const GZIP_PIECE_BYTES_MAX: usize = 1024;

/// Largest JSON body accepted on the control-plane routes, whose bodies are a few ids.
pub const JSON_BODY_BYTES_MAX: usize = 64 * 1024;

/// Which content encodings a route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encodings {
    /// Only plain bodies: a route whose bodies are a few ids gains nothing from compression.
    Identity,
    /// Plain or gzip; the limit counts the inflated bytes.
    IdentityOrGzip,
}

fn too_large(limit_bytes: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the body is larger than {limit_bytes} bytes"),
    )
}

fn invalid_body(error: PayloadError) -> ApiError {
    ApiError::bad_request("invalid_body", error.to_string())
}

fn is_json(req: &HttpRequest) -> bool {
    matches!(req.mime_type(), Ok(Some(mime))
        if mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON))
}

/// Whether the body is gzip: refuses an encoding the route does not take (`415`).
fn gzipped(req: &HttpRequest, encodings: Encodings) -> Result<bool, ApiError> {
    let Some(value) = req.headers().get(CONTENT_ENCODING) else {
        return Ok(false);
    };
    let name = value.to_str().unwrap_or("").trim().to_ascii_lowercase();
    match (name.as_str(), encodings) {
        ("identity", _) => Ok(false),
        ("gzip" | "x-gzip", Encodings::IdentityOrGzip) => Ok(true),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
            match encodings {
                Encodings::Identity => "this route takes no compressed bodies",
                Encodings::IdentityOrGzip => "the body must be plain or gzip",
            },
        )),
    }
}

/// Reads at most `limit_bytes` (after inflation) of JSON from `payload` and parses it as `T`.
pub async fn read_json<T: DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    limit_bytes: usize,
    encodings: Encodings,
) -> Result<T, ApiError> {
    if !is_json(req) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be application/json",
        ));
    }
    let gzip = gzipped(req, encodings)?;
    // A declared length over the limit is refused before anything is read; a gzip body is
    // judged here by its compressed size, and by its inflated size while it is read.
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit_bytes as u64) {
        return Err(too_large(limit_bytes));
    }
    let mut body = web::BytesMut::new();
    if gzip {
        let pieces = payload.flat_map(|chunk| {
            let pieces: Vec<Result<web::Bytes, PayloadError>> = match chunk {
                Ok(mut chunk) => {
                    let mut pieces = Vec::with_capacity(chunk.len() / GZIP_PIECE_BYTES_MAX + 1);
                    while chunk.len() > GZIP_PIECE_BYTES_MAX {
                        pieces.push(Ok(chunk.split_to(GZIP_PIECE_BYTES_MAX)));
                    }
                    pieces.push(Ok(chunk));
                    pieces
                }
                Err(error) => vec![Err(error)],
            };
            stream::iter(pieces)
        });
        let mut inflated = Decompress::new(pieces, ContentEncoding::Gzip);
        while let Some(chunk) = inflated.next().await {
            append(&mut body, &chunk.map_err(invalid_body)?, limit_bytes)?;
        }
    } else {
        let mut payload = payload;
        while let Some(chunk) = payload.next().await {
            append(&mut body, &chunk.map_err(invalid_body)?, limit_bytes)?;
        }
    }
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("the body is not valid: {e}")))
}

fn append(body: &mut web::BytesMut, chunk: &[u8], limit_bytes: usize) -> Result<(), ApiError> {
    if body.len().saturating_add(chunk.len()) > limit_bytes {
        return Err(too_large(limit_bytes));
    }
    body.extend_from_slice(chunk);
    Ok(())
}
