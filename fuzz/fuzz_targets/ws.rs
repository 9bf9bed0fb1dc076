#![no_main]
//! WebSocket server frames (`src/feed/ws.rs`): the reader never panics, every payload is within
//! its limits, and it returns the same frames whether the bytes arrive at once or in chunks (the
//! first input byte sets the chunk size), up to the first error, which is the same too.

use layer1::feed::ws::{Frame, FrameReader, WsError};
use layer1::parsers::FrameKind;
use libfuzzer_sys::fuzz_target;

const MAX_FRAME: usize = 4096;
const MAX_MESSAGE: usize = 8192;

/// What a frame was, with its payload copied out (payload handles expire on the next call).
#[derive(Debug, PartialEq)]
enum Seen {
    Data(FrameKind, Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    Close(Option<u16>),
}

/// Takes every complete frame from `r`; `Err` ends the connection.
fn drain(r: &mut FrameReader, out: &mut Vec<Seen>) -> Result<(), WsError> {
    while let Some(f) = r.next_frame()? {
        let seen = match f {
            Frame::Data(kind, p) => {
                let bytes = r.payload(p);
                assert!(bytes.len() <= MAX_MESSAGE, "message over its limit");
                if kind == FrameKind::Text {
                    assert!(std::str::from_utf8(bytes).is_ok(), "text frame not UTF-8");
                }
                Seen::Data(kind, bytes.to_vec())
            }
            Frame::Ping(p) => {
                let bytes = r.payload(p);
                assert!(bytes.len() <= 125, "control frame over 125 bytes");
                Seen::Ping(bytes.to_vec())
            }
            Frame::Pong => Seen::Pong,
            Frame::Close(code) => Seen::Close(code),
        };
        out.push(seen);
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else {
        return;
    };
    let mut whole = FrameReader::new(64, MAX_FRAME, MAX_MESSAGE);
    whole.push(bytes);
    let mut at_once = Vec::new();
    let first = drain(&mut whole, &mut at_once);

    let mut chunked = FrameReader::new(64, MAX_FRAME, MAX_MESSAGE);
    let mut in_chunks = Vec::new();
    let mut second = Ok(());
    for c in bytes.chunks(usize::from(split).max(1)) {
        chunked.push(c);
        second = drain(&mut chunked, &mut in_chunks);
        if second.is_err() {
            break;
        }
    }
    assert_eq!(
        at_once, in_chunks,
        "frames differ by how the bytes were split"
    );
    assert_eq!(first, second, "errors differ by how the bytes were split");
});
