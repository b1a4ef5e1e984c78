//! The console's languages: Simplified Chinese by default (the marketplace is Chinese), English
//! on request. Every string of a language lives in one catalog file, compiled into the binary.

use actix_web::http::header;
use actix_web::HttpRequest;
use std::collections::HashMap;
use std::sync::OnceLock;

pub const LANG_COOKIE: &str = "dts_lang";
/// Longest `Accept-Language` header looked at; real ones are a few dozen bytes.
const ACCEPT_LANGUAGE_BYTES_MAX: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

const ZH_CATALOG: &str = include_str!("i18n/zh-CN.toml");
const EN_CATALOG: &str = include_str!("i18n/en.toml");

fn load(source: &str) -> HashMap<String, String> {
    toml::from_str(source).expect("the compiled-in catalogs are valid TOML string tables")
}

fn catalog(lang: Lang) -> &'static HashMap<String, String> {
    static ZH: OnceLock<HashMap<String, String>> = OnceLock::new();
    static EN: OnceLock<HashMap<String, String>> = OnceLock::new();
    match lang {
        Lang::Zh => ZH.get_or_init(|| load(ZH_CATALOG)),
        Lang::En => EN.get_or_init(|| load(EN_CATALOG)),
    }
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    pub fn parse(code: &str) -> Option<Lang> {
        match code {
            "zh-CN" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub fn other(self) -> Lang {
        match self {
            Lang::Zh => Lang::En,
            Lang::En => Lang::Zh,
        }
    }

    /// The language a request asks for: the remembered switch, else the browser's preference
    /// (the first of Chinese or English by `q`), else Chinese.
    pub fn choose(cookie: Option<&str>, accept_language: Option<&str>) -> Lang {
        if let Some(lang) = cookie.and_then(Lang::parse) {
            return lang;
        }
        let Some(header) = accept_language.filter(|h| h.len() <= ACCEPT_LANGUAGE_BYTES_MAX) else {
            return Lang::Zh;
        };
        let mut best: Option<(u16, Lang)> = None;
        for item in header.split(',') {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let weight = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .map_or(1000, |q| (q.clamp(0.0, 1.0) * 1000.0) as u16);
            let lang = if tag == "zh" || tag.starts_with("zh-") {
                Lang::Zh
            } else if tag == "en" || tag.starts_with("en-") {
                Lang::En
            } else {
                continue;
            };
            if weight > 0 && best.is_none_or(|(w, _)| weight > w) {
                best = Some((weight, lang));
            }
        }
        best.map_or(Lang::Zh, |(_, lang)| lang)
    }

    /// The string `key` of this language; a missing key shows as itself (and fails a unit test).
    pub fn t(self, key: &str) -> String {
        catalog(self)
            .get(key)
            .cloned()
            .unwrap_or_else(|| key.to_owned())
    }

    /// The string `key` with `{name}` placeholders filled in.
    pub fn tf(self, key: &str, args: &[(&str, &str)]) -> String {
        let mut text = self.t(key);
        for (name, value) in args {
            text = text.replace(&format!("{{{name}}}"), value);
        }
        text
    }
}

/// The language of a request's page ([`Lang::choose`]).
pub fn lang_of(req: &HttpRequest) -> Lang {
    let cookie = req.cookie(LANG_COOKIE);
    let accept = req
        .headers()
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    Lang::choose(cookie.as_ref().map(|c| c.value()), accept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_catalogs_have_the_same_keys_and_placeholders() {
        let zh = catalog(Lang::Zh);
        let en = catalog(Lang::En);
        let mut zh_keys: Vec<_> = zh.keys().collect();
        let mut en_keys: Vec<_> = en.keys().collect();
        zh_keys.sort();
        en_keys.sort();
        assert_eq!(zh_keys, en_keys);
        let placeholders = |s: &str| {
            let mut found: Vec<String> = s
                .split('{')
                .skip(1)
                .filter_map(|p| p.split_once('}').map(|(n, _)| n.to_owned()))
                .collect();
            found.sort();
            found
        };
        for key in zh.keys() {
            assert_eq!(placeholders(&zh[key]), placeholders(&en[key]), "{key}");
        }
    }

    #[test]
    fn the_remembered_switch_wins_then_the_browser_then_chinese() {
        assert_eq!(Lang::choose(Some("en"), Some("zh-CN")), Lang::En);
        assert_eq!(Lang::choose(Some("zh-CN"), Some("en-US")), Lang::Zh);
        assert_eq!(Lang::choose(None, Some("en-US,en;q=0.9")), Lang::En);
        assert_eq!(Lang::choose(None, Some("fr, en;q=0.5, zh;q=0.8")), Lang::Zh);
        assert_eq!(Lang::choose(None, Some("zh;q=0.2, en-GB;q=0.7")), Lang::En);
        assert_eq!(Lang::choose(None, Some("fr")), Lang::Zh);
        assert_eq!(Lang::choose(Some("xx"), None), Lang::Zh);
        assert_eq!(
            Lang::En.tf("renew.done", &[("task", "t1"), ("package", "p")]),
            "Task t1 now draws from package p."
        );
    }
}
