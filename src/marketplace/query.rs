//! The raw callback query string, decoded exactly as the marketplace signs it.
//!
//! `+` is a space and `%XX` a byte; names and values stay bytes here, because the token covers the
//! decoded bytes, whatever they are. Text checks come after the token check.

/// Longest query string accepted. The largest values are the JSON `extraInfo` and `additionInfo`
/// ([`super::params::JSON_BYTES_MAX`] bytes each once decoded, up to three times that
/// percent-encoded); everything else is a few hundred bytes.
pub const QUERY_BYTES_MAX: usize = 64 * 1024;
/// Most parameters accepted: `createInstance` has fifteen at most.
pub const PARAMS_MAX: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("the query string is longer than {QUERY_BYTES_MAX} bytes")]
    TooLong,
    #[error("more than {PARAMS_MAX} parameters")]
    TooMany,
    #[error("parameter {0} has a malformed %-escape")]
    BadEscape(String),
    #[error("parameter {0} appears more than once")]
    Duplicate(String),
}

/// Decoded `(name, value)` pairs in arrival order, names unique.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

pub fn parse(query: &str) -> Result<Pairs, QueryError> {
    if query.len() > QUERY_BYTES_MAX {
        return Err(QueryError::TooLong);
    }
    let mut pairs: Pairs = Vec::new();
    for segment in query.split('&').filter(|s| !s.is_empty()) {
        if pairs.len() == PARAMS_MAX {
            return Err(QueryError::TooMany);
        }
        let (raw_name, raw_value) = segment.split_once('=').unwrap_or((segment, ""));
        let shown = || String::from_utf8_lossy(raw_name.as_bytes()).into_owned();
        let name = decode(raw_name).ok_or_else(|| QueryError::BadEscape(shown()))?;
        let value = decode(raw_value).ok_or_else(|| QueryError::BadEscape(shown()))?;
        if pairs.iter().any(|(seen, _)| *seen == name) {
            return Err(QueryError::Duplicate(
                String::from_utf8_lossy(&name).into_owned(),
            ));
        }
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// `application/x-www-form-urlencoded` decoding; `None` on a malformed `%` escape.
fn decode(raw: &str) -> Option<Vec<u8>> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                // Exactly two ASCII hex digits: `u8::from_str_radix` alone would also take a sign,
                // so `%+1` would pass as byte 1.
                let high = hex_digit(*bytes.get(i + 1)?)?;
                let low = hex_digit(*bytes.get(i + 2)?)?;
                out.push(high << 4 | low);
                i += 2;
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    Some(out)
}

fn hex_digit(byte: u8) -> Option<u8> {
    // `to_digit` accepts only `0-9a-fA-F` for radix 16.
    char::from(byte).to_digit(16).map(|digit| digit as u8)
}

/// The value of `name`, if present.
pub fn get<'a>(pairs: &'a Pairs, name: &str) -> Option<&'a [u8]> {
    pairs
        .iter()
        .find(|(n, _)| n == name.as_bytes())
        .map(|(_, v)| v.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_is_a_space_and_escapes_are_bytes() {
        let pairs = parse("a=x+y&b=%40%e6%b5%81&c=&d").unwrap();
        assert_eq!(get(&pairs, "a"), Some(&b"x y"[..]));
        assert_eq!(get(&pairs, "b"), Some("@流".as_bytes()));
        assert_eq!(get(&pairs, "c"), Some(&b""[..]));
        assert_eq!(get(&pairs, "d"), Some(&b""[..]));
        assert_eq!(get(&pairs, "e"), None);
    }

    #[test]
    fn malformed_escapes_duplicates_and_floods_are_refused() {
        assert_eq!(parse("a=%4"), Err(QueryError::BadEscape("a".into())));
        assert_eq!(parse("a=%zz"), Err(QueryError::BadEscape("a".into())));
        for signed in ["a=%+1", "a=%-1", "a=%+f", "a=%1+", "a=% 1"] {
            assert_eq!(
                parse(signed),
                Err(QueryError::BadEscape("a".into())),
                "{signed}"
            );
        }
        assert_eq!(parse("%+1=a"), Err(QueryError::BadEscape("%+1".into())));
        assert_eq!(get(&parse("a=%4A%4a").unwrap(), "a"), Some(&b"JJ"[..]));
        assert_eq!(parse("a=1&a=2"), Err(QueryError::Duplicate("a".into())));
        assert_eq!(parse("a=1&%61=2"), Err(QueryError::Duplicate("a".into())));
        let flood: Vec<String> = (0..=PARAMS_MAX).map(|i| format!("p{i}=1")).collect();
        assert_eq!(parse(&flood.join("&")), Err(QueryError::TooMany));
        assert_eq!(
            parse(&"a".repeat(QUERY_BYTES_MAX + 1)),
            Err(QueryError::TooLong)
        );
    }
}
