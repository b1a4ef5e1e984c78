//! The marketplace's callback token (DESIGN §3).
//!
//! Every parameter except `token`, decoded, sorted by name in byte order, joined as `name=value`
//! with `&` (empty values included as `name=`), then `&key=<ISV key>`; the MD5 hex digest of that
//! must equal `token`. It is the only authentication this endpoint has.
//!
//! The signing string escapes nothing, so it can be ambiguous: a value holding `&name=` can be
//! re-split into other parameters under the same token (`extraInfo={}&jdPin=victim&…` signs the
//! same string as `extraInfo={}` and `jdPin=victim`). [`ambiguity`] names such a callback, which
//! is refused even though its token holds.

use super::query::{get, Pairs};
use crate::configuration::Secret;
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

/// The string that is hashed, for a given key.
pub fn signing_input(pairs: &Pairs, key: &str) -> Vec<u8> {
    let mut sorted: Vec<&(Vec<u8>, Vec<u8>)> =
        pairs.iter().filter(|(name, _)| name != b"token").collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut input = Vec::new();
    for (i, (name, value)) in sorted.into_iter().enumerate() {
        if i > 0 {
            input.push(b'&');
        }
        input.extend_from_slice(name);
        input.push(b'=');
        input.extend_from_slice(value);
    }
    input.extend_from_slice(b"&key=");
    input.extend_from_slice(key.as_bytes());
    input
}

/// Why the signing string of these parameters could be read as another set of parameters, if it
/// could: a name holding `&` or `=`, or a value holding `&` followed by a `name=` (an `=` before
/// the next `&`). Splitting the string at such an `&` gives a pair of its own, so the same token
/// would sign a callback with other parameters. Values with `=` alone (base64, say) or `&` alone
/// (`A&B`) read one way only and pass. The rule is wider than the exact question (whether some
/// other split also sorts into the same string), which a crafted 64 KiB query would make costly
/// to answer; what it refuses is never sent by the marketplace's own documented callbacks.
pub fn ambiguity(pairs: &Pairs) -> Option<String> {
    for (name, value) in pairs.iter().filter(|(name, _)| name != b"token") {
        let shown = String::from_utf8_lossy(name);
        if name.iter().any(|b| matches!(b, b'&' | b'=')) {
            return Some(format!("the name {shown:?} holds & or ="));
        }
        let splits_off_a_pair = value
            .split(|b| *b == b'&')
            .skip(1)
            .any(|piece| piece.contains(&b'='));
        if splits_off_a_pair {
            return Some(format!(
                "the value of {shown} holds &name=, which the signing string cannot tell from \
                 another parameter"
            ));
        }
    }
    None
}

/// The token the marketplace computes for these parameters.
pub fn expected(pairs: &Pairs, key: &Secret) -> String {
    hex::encode(Md5::digest(signing_input(pairs, key.expose())))
}

/// Whether `token` is present and right, compared in constant time.
pub fn is_valid(pairs: &Pairs, key: &Secret) -> bool {
    let Some(token) = get(pairs, "token") else {
        return false;
    };
    let token = token.to_ascii_lowercase();
    let expected = expected(pairs, key);
    token.len() == expected.len() && bool::from(token.ct_eq(expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::super::query::parse;
    use super::*;

    fn key() -> Secret {
        Secret::new("isv-key")
    }

    #[test]
    fn parameters_are_sorted_decoded_and_empty_ones_kept() {
        let pairs =
            parse("skuId=S1&action=createInstance&mobile=&email=a%40b.cn&template=x+y&token=t")
                .unwrap();
        assert_eq!(
            String::from_utf8(signing_input(&pairs, "isv-key")).unwrap(),
            "action=createInstance&email=a@b.cn&mobile=&skuId=S1&template=x y&key=isv-key"
        );
    }

    #[test]
    fn tokens_match_vectors_computed_outside_this_code() {
        // `printf '%s' '<signing input>' | md5sum`
        let pairs = parse(
            "action=createInstance&jdPin=jd_user&orderBizId=biz-1&orderId=o-1&serviceCode=dts\
             &skuId=FW_GOODS-500232-1&mobile=&email=a%40b.cn&template=x+y&accountNum=1&token=t",
        )
        .unwrap();
        assert_eq!(expected(&pairs, &key()), "3e1f4552997fe2a22cdf476277e080cc");
        let pairs = parse("instanceId=biz-1&action=expiredInstance").unwrap();
        assert_eq!(expected(&pairs, &key()), "a4b0331b747db998360a23ca2b8497a8");
    }

    #[test]
    fn tokens_match_md5_of_the_signing_input() {
        // Vectors computed from the rule with a reference MD5 (`printf '%s' ... | md5sum`).
        let pairs = parse("action=expiredInstance&instanceId=biz-1&token=x").unwrap();
        assert_eq!(
            expected(&pairs, &key()),
            hex::encode(Md5::digest(
                b"action=expiredInstance&instanceId=biz-1&key=isv-key"
            ))
        );
        assert_eq!(
            hex::encode(Md5::digest(b"abc")),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        let extra = r#"{"region":"cn-north-1","note":"a b"}"#;
        let encoded: String =
            percent_encoding::utf8_percent_encode(extra, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        let pairs = parse(&format!(
            "action=dilateInstance&extraInfo={encoded}&accountNum=2"
        ))
        .unwrap();
        let input = format!("accountNum=2&action=dilateInstance&extraInfo={extra}&key=isv-key");
        assert_eq!(
            expected(&pairs, &key()),
            hex::encode(Md5::digest(input.as_bytes()))
        );
    }

    #[test]
    fn a_value_holding_another_pair_is_ambiguous_and_the_documented_callbacks_are_not() {
        // The attack: one signed string, two readings.
        let forged = parse(
            "action=createInstance&jdPin=mallory&orderBizId=7001&orderId=71&serviceCode=dts\
             &skuId=FW_GOODS-500232-1&extraInfo=%7B%7D%26jdPin%3Dvictim%26orderBizId%3D7002\
             %26orderId%3D72%26serviceCode%3Ddts%26skuId%3DFW_GOODS-500232-2%26skuIz%3D",
        )
        .unwrap();
        let reading = ambiguity(&forged).expect("ambiguous");
        assert!(reading.contains("extraInfo"), "{reading}");
        assert!(ambiguity(&parse("a%3Db=1").unwrap()).is_some());
        assert!(ambiguity(&parse("a%26b=1").unwrap()).is_some());
        // The documented callbacks, and values with `=` or `&` alone.
        for fine in [
            "accountNum=1&action=createInstance&email=bujiaban@jd.com\
             &expiredOn=2018-06-30+23:59:59&jdPin=bujiaban&mobile=&orderBizId=444181\
             &orderId=556596&serviceCode=FW_GOODS-500232&skuId=FW_GOODS-500232-1&template=",
            "action=dilateInstance&extraInfo=%7B%22key1%22:%221%22,%22key1%22,%222%22%7D",
            "action=verify&template=A%26B&mobile=YWJj%3D%3D",
            "action=createInstance&additionInfo+=%7B%7D",
        ] {
            assert_eq!(ambiguity(&parse(fine).unwrap()), None, "{fine}");
        }
    }

    #[test]
    fn only_the_right_token_passes() {
        let mut pairs = parse("action=verify&instanceId=biz-1").unwrap();
        assert!(!is_valid(&pairs, &key()), "a missing token fails");
        let right = expected(&pairs, &key());
        pairs.push((b"token".to_vec(), right.to_uppercase().into_bytes()));
        assert!(is_valid(&pairs, &key()), "hex case does not matter");
        let wrong = Secret::new("other-key");
        assert!(!is_valid(&pairs, &wrong));
        pairs.last_mut().unwrap().1 = b"0".to_vec();
        assert!(!is_valid(&pairs, &key()));
    }
}
