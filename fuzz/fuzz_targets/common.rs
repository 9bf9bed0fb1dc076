//! Shared sink: validates and JSON-encodes every tick, checks reject bytes lie in the frame, and
//! takes the parsers' look-ahead hints.

use layer1::{
    encode::encode_json,
    parsers::{ParseError, TickSink},
    tick::Tick,
    validate::{validate, ValidationLimits},
};

pub struct Sink<'a> {
    pub frame: &'a [u8],
    pub json: Vec<u8>,
}

impl TickSink for Sink<'_> {
    fn tick(&mut self, t: &Tick) {
        let _ = validate(t, t.received_at_ns, &ValidationLimits::default());
        self.json.clear();
        encode_json(t, None, &mut self.json);
        assert!(serde_json_check(&self.json), "invalid JSON");
    }
    fn reject(&mut self, _: &ParseError, raw: &[u8]) {
        let f = self.frame.as_ptr_range();
        let r = raw.as_ptr_range();
        assert!(raw.is_empty() || (r.start >= f.start && r.end <= f.end));
    }
    // Take the parsers' look-ahead hints, so their walks over packet headers are fuzzed too.
    fn wants_upcoming(&self) -> bool {
        true
    }
}

/// Cheap structural check (balanced braces outside strings) without pulling serde_json in.
fn serde_json_check(b: &[u8]) -> bool {
    let (mut depth, mut in_str, mut esc) = (0i32, false, false);
    for &c in b {
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
    }
    depth == 0 && !in_str
}
