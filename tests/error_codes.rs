//! Every error code the engine can report is documented in `docs/errors.md`. The codes are read
//! from the sources under `src/`: the `UPPER_SNAKE_CASE` string literals (at least one `_`) in the
//! body of each `fn code(&self) -> &'static str`, and the literal of every `code = "..."` (the
//! codes log lines carry). Each must appear in the document backticked (`` `CODE` ``), or fall
//! under a documented family pattern ending in `_*` (e.g. `JSON_MAP_*`). A failure lists every
//! missing code with the files that use it.

// Test code: a panic is the failure report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

const SIGNATURE: &str = "fn code(&self) -> &'static str";

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// `^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$`
fn is_code(s: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    };
    let mut parts = s.split('_');
    let first = parts.next().unwrap_or("");
    let rest: Vec<&str> = parts.collect();
    first.starts_with(|c: char| c.is_ascii_uppercase())
        && part(first)
        && !rest.is_empty()
        && rest.iter().all(|p| part(p))
}

/// From the `{` at `open`: the offset of its matching `}` and the contents of the string
/// literals in between. Braces inside string and char literals and comments do not count.
fn body_literals(src: &str, open: usize) -> Option<(usize, Vec<String>)> {
    let b = src.as_bytes();
    let mut literals = Vec::new();
    let mut depth = 0usize;
    let mut i = open;
    while i < b.len() {
        match b[i] {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some((i, literals));
                }
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                i = src[i..].find('\n').map_or(b.len(), |n| i + n);
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = src[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2);
                continue;
            }
            b'"' => {
                // An ordinary (or byte) string: ends at the first unescaped quote.
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                literals.push(src.get(i + 1..j)?.to_owned());
                i = j + 1;
                continue;
            }
            b'r' if i == 0 || !is_ident(b[i - 1]) || b[i - 1] == b'b' => {
                // A raw string `r#"..."#` (or a plain `r` identifier start).
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + 1 + hashes) == Some(&b'"') {
                    let start = i + 2 + hashes;
                    let close = format!("\"{}", "#".repeat(hashes));
                    let end = start + src[start..].find(&close)?;
                    literals.push(src[start..end].to_owned());
                    i = end + close.len();
                    continue;
                }
            }
            b'\'' => {
                // A char literal ('{', '\'', '\u{7b}') is skipped whole; a lifetime is not one.
                if b.get(i + 1) == Some(&b'\\') {
                    i = src[i + 3..].find('\'').map_or(b.len(), |n| i + 3 + n + 1);
                    continue;
                }
                if let Some(c) = src[i + 1..].chars().next() {
                    if b.get(i + 1 + c.len_utf8()) == Some(&b'\'') {
                        i += 2 + c.len_utf8();
                        continue;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The code-shaped literals in the bodies of every `fn code(&self) -> &'static str` in `src`
/// (a declaration without a body, like the trait's, has none).
fn code_fn_codes(src: &str, shown: &str) -> Vec<String> {
    let mut codes = Vec::new();
    let mut from = 0;
    while let Some(at) = src[from..].find(SIGNATURE) {
        from += at + SIGNATURE.len();
        let rest = src[from..].trim_start();
        if !rest.starts_with('{') {
            continue;
        }
        let open = src.len() - rest.len();
        let (close, literals) = body_literals(src, open).unwrap_or_else(|| {
            panic!("{shown}: no closing brace for the `fn code` at byte {open}")
        });
        codes.extend(literals.into_iter().filter(|l| is_code(l)));
        from = close;
    }
    codes
}

/// The literal of every `code = "..."` in `src` outside `//` comments.
fn log_codes(src: &str) -> Vec<String> {
    let b = src.as_bytes();
    let mut codes = Vec::new();
    let mut from = 0;
    while let Some(at) = src[from..].find("code") {
        let start = from + at;
        from = start + "code".len();
        if (start > 0 && is_ident(b[start - 1])) || b.get(from).is_some_and(|&c| is_ident(c)) {
            continue;
        }
        let Some(rest) = src[from..].trim_start().strip_prefix('=') else {
            continue;
        };
        if rest.starts_with('=') {
            continue;
        }
        let Some(rest) = rest.trim_start().strip_prefix('"') else {
            continue;
        };
        let line_start = src[..start].rfind('\n').map_or(0, |n| n + 1);
        if src[line_start..start].contains("//") {
            continue;
        }
        if let Some(end) = rest.find('"') {
            codes.push(rest[..end].to_owned());
        }
    }
    codes
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_error_code_is_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = fs::read_to_string(root.join("docs/errors.md")).expect("read docs/errors.md");
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();

    // Code -> the files that use it.
    let mut codes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let (mut in_fns, mut in_logs) = (0, 0);
    for path in &files {
        let src = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let shown = path
            .strip_prefix(root)
            .unwrap_or(path)
            .display()
            .to_string();
        let from_fns = code_fn_codes(&src, &shown);
        let from_logs = log_codes(&src);
        in_fns += from_fns.len();
        in_logs += from_logs.len();
        for code in from_fns.into_iter().chain(from_logs) {
            codes.entry(code).or_default().insert(shown.clone());
        }
    }
    assert!(
        in_fns > 0 && in_logs > 0,
        "the scan of src/ found {in_fns} codes in `fn code` bodies and {in_logs} in `code = \"...\"`"
    );

    // Documented families: backticked `PREFIX_*`.
    let families: Vec<&str> = doc
        .split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|s| s.strip_suffix('*'))
        .filter(|p| p.ends_with('_'))
        .collect();
    let missing: Vec<String> = codes
        .iter()
        .filter(|(code, _)| {
            !doc.contains(&format!("`{code}`")) && !families.iter().any(|f| code.starts_with(f))
        })
        .map(|(code, used_in)| {
            let used_in: Vec<&str> = used_in.iter().map(String::as_str).collect();
            format!("{code} ({})", used_in.join(", "))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} error codes are not documented in docs/errors.md (as `CODE`, or under a `PREFIX_*` family):\n  {}",
        missing.len(),
        codes.len(),
        missing.join("\n  ")
    );
}

/// The scanner itself: bodies end at their own brace whatever their literals hold, a
/// declaration without a body is skipped, and only real `code = "..."` assignments count.
#[test]
fn the_scanner_reads_what_it_should() {
    let src = r#"
trait ErrorCode { fn code(&self) -> &'static str; }
impl ErrorCode for E {
    fn code(&self) -> &'static str {
        match self {
            E::A => "AREA_ONE", // "AREA_COMMENT" is not read
            E::B if '{' == '{' => "AREA_TWO",
            E::C => "lower_case",
            E::D => "NOUNDERSCORE",
            E::E => { "AREA_}_BRACE"; "AREA_THREE" }
        }
    }
}
fn other() -> &'static str { "AREA_AFTER" }
fn log() {
    log::error!(event = "x", code = "LOG_ONE"; "text");
    // log::error!(code = "LOG_COMMENTED");
    let error_code = "LOG_NOT_A_CODE_FIELD";
    if code == "LOG_COMPARED" {}
}
"#;
    assert_eq!(
        code_fn_codes(src, "test"),
        ["AREA_ONE", "AREA_TWO", "AREA_THREE"]
    );
    assert_eq!(log_codes(src), ["LOG_ONE"]);
    assert!(is_code("A1_B2_C") && !is_code("_A_B") && !is_code("A__B") && !is_code("A_b"));
}
