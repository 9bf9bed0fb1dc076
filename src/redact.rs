//! Redaction: removes credentials from anything that is about to be logged or shown.
//!
//! Three layers, applied by the logger to every line and available to any code that renders
//! text for people (status API, error messages):
//! 1. every [`crate::config::Secret`] registers its value here, and [`redact`] replaces any
//!    occurrence of a registered value, whatever surrounds it;
//! 2. URL query parameters and `key=value` / `"key": "value"` pairs whose key names a
//!    credential (`access_token`, `api_key`, `token`, `code`, ...) lose their value, and so
//!    does URL user-info (`user:pass@`);
//! 3. `Authorization`-style values (`Bearer x`, `token key:secret`) and JWT-shaped strings.

use std::sync::RwLock;

/// What replaces a removed value.
pub const MASK: &str = "***";

/// Registered secret values; shorter ones are ignored (they would mask ordinary words).
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());
const MIN_SECRET_LEN: usize = 6;
const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Key names whose values are credentials, compared case-insensitively, `-` and `_` alike.
const SENSITIVE_KEYS: &[&str] = &[
    "access_token",
    "accesstoken",
    "api_key",
    "apikey",
    "api_secret",
    "apisecret",
    "token",
    "feed_token",
    "feedtoken",
    "code",
    "secret",
    "password",
    "passwd",
    "authorization",
    "auth",
    "jwt",
    "request_token",
    "refresh_token",
    "client_secret",
    "x_api_key",
    "x_feed_token",
    "x_privatekey",
    "access_token_key",
    "status_token",
];

/// Registers a secret value so that [`redact`] masks it wherever it appears.
pub fn register_secret(value: &str) {
    if value.len() < MIN_SECRET_LEN {
        return;
    }
    let mut secrets = match SECRETS.write() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    // The value as it appears in a URL (connectors percent-encode credentials) is masked too.
    let mut encoded = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(b));
        } else {
            encoded.push('%');
            for nibble in [b >> 4, b & 0xf] {
                encoded.push(char::from(
                    HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
                ));
            }
        }
    }
    for v in [value.to_owned(), encoded] {
        if !secrets.contains(&v) {
            secrets.push(v);
        }
    }
    // Longest first, so a secret that contains another is masked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

fn is_sensitive_key(key: &str) -> bool {
    let norm: String = key
        .trim_matches(|c: char| c == '"' || c == '\'' || c.is_whitespace())
        .chars()
        .map(|c| {
            if c == '-' {
                '_'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    SENSITIVE_KEYS.contains(&norm.as_str())
        || norm.ends_with("_token")
        || norm.ends_with("_secret")
        || norm.ends_with("_key") && norm != "instrument_key"
}

fn is_value_char(c: char) -> bool {
    !(c.is_whitespace()
        || matches!(
            c,
            '&' | '"' | '\'' | ',' | ';' | '}' | ']' | ')' | '>' | '<' | '#'
        ))
}

/// Returns `text` with every credential the three layers recognise replaced by [`MASK`].
pub fn redact(text: &str) -> String {
    let mut out = mask_registered(text);
    out = mask_auth_schemes(&out);
    out = mask_key_values(&out);
    out = mask_userinfo(&out);
    mask_jwts(&out)
}

/// Redacts a URL: credential query parameters and user-info. Same as [`redact`]; kept as its own
/// name so call sites say what they hold.
pub fn redact_url(url: &str) -> String {
    redact(url)
}

fn mask_registered(text: &str) -> String {
    let secrets = match SECRETS.read() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    let mut out = text.to_owned();
    for s in secrets.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), MASK);
        }
    }
    out
}

/// `Bearer abc`, `token key:secret`, `Basic abc` after an authorization-like word.
fn mask_auth_schemes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let lower = rest.to_ascii_lowercase();
        let hit = ["bearer ", "basic ", "token "]
            .iter()
            .filter_map(|w| lower.find(w).map(|i| (i, w.len())))
            .min_by_key(|(i, _)| *i);
        let Some((i, wlen)) = hit else {
            out.push_str(rest);
            return out;
        };
        let (head, tail) = rest.split_at(i + wlen);
        out.push_str(head);
        let vlen = tail.find(|c: char| !is_value_char(c)).unwrap_or(tail.len());
        // A lone ordinary word after "token " (e.g. "token expired") is not a credential;
        // credentials are long or contain a separator such as ':'.
        let value = tail.get(..vlen).unwrap_or("");
        if vlen >= 8 || value.contains(':') {
            out.push_str(MASK);
        } else {
            out.push_str(value);
        }
        rest = tail.get(vlen..).unwrap_or("");
    }
}

/// `key=value`, `key: value`, `"key":"value"` where key is sensitive.
fn mask_key_values(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes.get(i).copied().unwrap_or(0);
        if c == b'=' || c == b':' {
            // key: the run of identifier characters before the separator (quotes allowed)
            let mut k_end = i;
            while k_end > 0 && matches!(bytes.get(k_end - 1), Some(b'"') | Some(b'\'') | Some(b' '))
            {
                k_end -= 1;
            }
            let mut k_start = k_end;
            while k_start > 0
                && bytes
                    .get(k_start - 1)
                    .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
            {
                k_start -= 1;
            }
            let key = text.get(k_start..k_end).unwrap_or("");
            if !key.is_empty() && is_sensitive_key(key) {
                // value: skip spaces and an opening quote, then the value run
                let mut v_start = i + 1;
                while matches!(bytes.get(v_start), Some(b' ')) {
                    v_start += 1;
                }
                let quoted = matches!(bytes.get(v_start), Some(b'"') | Some(b'\''));
                if quoted {
                    v_start += 1;
                }
                let tail = text.get(v_start..).unwrap_or("");
                let vlen = tail.find(|c: char| !is_value_char(c)).unwrap_or(tail.len());
                // `"token": null`, `code: 200`-style numbers and empty values stay readable.
                let value = tail.get(..vlen).unwrap_or("");
                let harmless = value.is_empty()
                    || value == "null"
                    || value == MASK
                    || (value.len() < 6 && value.bytes().all(|b| b.is_ascii_digit()));
                if !harmless {
                    out.push_str(text.get(copied..v_start).unwrap_or(""));
                    out.push_str(MASK);
                    copied = v_start + vlen;
                    i = copied;
                    continue;
                }
            }
        }
        i += 1;
    }
    out.push_str(text.get(copied..).unwrap_or(""));
    out
}

/// `scheme://user:pass@host` -> `scheme://***@host`.
fn mask_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let auth_end = tail
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '"')
            .unwrap_or(tail.len());
        let authority = tail.get(..auth_end).unwrap_or("");
        if let Some(at) = authority.rfind('@') {
            out.push_str(MASK);
            out.push_str(authority.get(at..).unwrap_or(""));
        } else {
            out.push_str(authority);
        }
        rest = tail.get(auth_end..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

/// Three base64url segments starting `eyJ` (a JWT's `{"` header).
fn mask_jwts(text: &str) -> String {
    if !text.contains("eyJ") {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("eyJ") {
        let (head, tail) = rest.split_at(i);
        out.push_str(head);
        let len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
            .unwrap_or(tail.len());
        let candidate = tail.get(..len).unwrap_or("");
        if candidate.split('.').count() >= 3 && len >= 20 {
            out.push_str(MASK);
            rest = tail.get(len..).unwrap_or("");
        } else {
            out.push_str("eyJ");
            rest = tail.get(3..).unwrap_or("");
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKENS: [&str; 3] = [
        "AbCdEf0123456789xyzKITE",
        "UPSTOXsecretZZ9988776655",
        "9f8e7d6c5b4a39281706",
    ];

    fn assert_clean(s: &str) {
        for t in TOKENS {
            assert!(!s.contains(t), "leaked {t} in {s}");
        }
    }

    #[test]
    fn registered_secrets_are_masked_in_their_url_encoded_form_too() {
        let secret = "REDACTtest/with+special=chars 42";
        register_secret(secret);
        let encoded = "REDACTtest%2Fwith%2Bspecial%3Dchars%2042";
        let out = redact(&format!(
            "connect to wss://h/p?x={encoded}#frag and {secret}."
        ));
        assert!(!out.contains(encoded) && !out.contains(secret), "{out}");
        assert!(out.contains("wss://h/p?x=***"), "{out}");
    }

    #[test]
    fn urls_lose_credential_parameters() {
        let url = format!(
            "wss://ws.kite.trade/?api_key={}&access_token={}&uid=17",
            TOKENS[2], TOKENS[0]
        );
        let r = redact_url(&url);
        assert_clean(&r);
        assert!(r.contains("uid=17"), "{r}");
        assert!(r.starts_with("wss://ws.kite.trade/?api_key=***"), "{r}");
        let r = redact_url(&format!(
            "wss://feed.example/v3?requestId=abc&code={}",
            TOKENS[1]
        ));
        assert_clean(&r);
        assert!(r.contains("requestId=abc"));
        let r = redact_url(&format!("redis://user:{}@127.0.0.1:6379/0", TOKENS[1]));
        assert_clean(&r);
        assert!(r.contains("@127.0.0.1:6379"));
    }

    #[test]
    fn headers_json_and_jwts_are_masked() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlX2hlcmU";
        let samples = [
            format!("Authorization: Bearer {}", TOKENS[1]),
            format!("authorization: token {}:{}", TOKENS[2], TOKENS[0]),
            format!("{{\"access_token\":\"{}\",\"x\":1}}", TOKENS[0]),
            format!("X-Api-Key: {}", TOKENS[2]),
            format!("feed_token={} rest", TOKENS[1]),
            format!("jwt {jwt} end"),
        ];
        for s in &samples {
            let r = redact(s);
            assert_clean(&r);
            assert!(!r.contains("c2lnbmF0dXJlX2hlcmU"), "{r}");
        }
    }

    #[test]
    fn registered_secrets_are_masked_anywhere() {
        register_secret("zz_REGISTERED_secret_42");
        let r = redact("weird context zz_REGISTERED_secret_42!!");
        assert_eq!(r, "weird context ***!!");
    }

    #[test]
    fn ordinary_text_is_untouched() {
        for s in [
            "connected to 127.0.0.1:9092 in 12 ms",
            "token expired, re-reading credentials",
            "instrument_key=NSE_EQ|INE002A01018",
            "http status code: 429",
            "{\"event\":\"connection_state\",\"state\":\"open\"}",
        ] {
            assert_eq!(redact(s), s);
        }
    }
}
