//! `layer1 decode` end to end over captures built with the capture writer and the vendor
//! encoders: JSON lines out, heartbeats/text silent, parse errors counted, exit semantics.

// Test code: a panic is the failure report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use layer1::{
    capture::{CaptureError, CaptureReader, CaptureWriter, Record, MAX_PAYLOAD_LEN},
    decode::{decode_from, run_decode, DecodeError},
    parsers::{kite, FrameKind},
    vendor::Vendor,
};

const REAL_FULL: &[u8] = include_bytes!("fixtures/kite/real_full.bin");
const UPSTOX_FULL: &[u8] = include_bytes!("fixtures/upstox/full_market.bin");

fn capture() -> Vec<u8> {
    let mut w = CaptureWriter::new(Vec::new()).unwrap();
    let mut frame = Vec::new();
    kite::encode_frame(&[REAL_FULL, REAL_FULL], &mut frame);
    // The Kite sample was stamped 2021-07-05T10:41:27+05:30; received 2 s later.
    let rec = |ns: u64, vendor, kind| Record {
        received_at_ns: ns,
        vendor,
        kind,
        conn_id: 1,
    };
    w.write_record(
        &rec(1_625_461_889_000_000_000, Vendor::Kite, FrameKind::Binary),
        &frame,
    )
    .unwrap();
    w.write_record(
        &rec(1_625_461_889_100_000_000, Vendor::Kite, FrameKind::Binary),
        &[0],
    )
    .unwrap();
    w.write_record(
        &rec(1_625_461_889_200_000_000, Vendor::Kite, FrameKind::Text),
        br#"{"type":"error","data":"x"}"#,
    )
    .unwrap();
    let mut bad = frame.clone();
    bad.truncate(frame.len() - 10);
    w.write_record(
        &rec(1_625_461_889_300_000_000, Vendor::Kite, FrameKind::Binary),
        &bad,
    )
    .unwrap();
    w.write_record(
        &rec(1_732_700_000_500_000_000, Vendor::Upstox, FrameKind::Binary),
        UPSTOX_FULL,
    )
    .unwrap();
    w.into_inner()
}

#[test]
fn decodes_ticks_to_json_lines_and_summarises_errors() {
    let cap = capture();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let s = decode_from(&cap[..], &mut out, &mut err).unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 2 + 1 (the truncated frame's first packet) Kite ticks, 2 Upstox ticks.
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(s.ticks, 5);
    assert_eq!(s.records, 5);
    assert_eq!(s.heartbeats, 1);
    assert_eq!(s.text_frames, 1);
    assert_eq!(s.parse_errors.get("PARSE_KITE_PACKET_OVERRUN"), Some(&1));
    assert_eq!(lines[0]["receivedAt"], 1_625_461_889_000i64);
    assert_eq!(lines[0]["ltp"], 1573.7);
    assert_eq!(lines[4]["vendor"], "upstox");
    let err = String::from_utf8(err).unwrap();
    assert!(
        err.contains("5 ticks") && err.contains("PARSE_KITE_PACKET_OVERRUN: 1"),
        "{err}"
    );
}

#[test]
fn truncated_capture_is_reported_but_succeeds() {
    let cap = capture();
    let cut = &cap[..cap.len() - 7];
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let s = decode_from(cut, &mut out, &mut err).unwrap();
    assert!(s.truncated);
    assert_eq!(s.ticks, 3);
    assert!(String::from_utf8(err).unwrap().contains("truncated"));
}

/// A record header claiming a payload near the 64 MiB cap, followed by a few bytes: the reader
/// reports the truncation having reserved about what the file holds (found while fuzzing the
/// capture reader: it used to allocate and zero the claimed length first).
#[test]
fn huge_claimed_record_length_allocates_only_what_the_file_holds() {
    let mut cap = CaptureWriter::new(Vec::new()).unwrap().into_inner();
    let claimed: u32 = MAX_PAYLOAD_LEN - 1;
    // Record header: receive ns u64, vendor u8, kind u8, conn id u16, payload length u32 (LE).
    cap.extend_from_slice(&1_u64.to_le_bytes());
    cap.extend_from_slice(&[Vendor::Kite.code(), FrameKind::Binary as u8]);
    cap.extend_from_slice(&1_u16.to_le_bytes());
    cap.extend_from_slice(&claimed.to_le_bytes());
    cap.extend_from_slice(&[7; 10]);
    let mut r = CaptureReader::new(&cap[..]).unwrap();
    let mut buf = Vec::new();
    let e = r.next_record(&mut buf).unwrap_err();
    assert!(matches!(e, CaptureError::TruncatedRecord { .. }), "{e}");
    assert_eq!(buf, [7; 10]);
    assert!(
        buf.capacity() <= 2 << 20,
        "reserved {} bytes",
        buf.capacity()
    );
    assert!(r.next_record(&mut buf).unwrap().is_none());
    // And through `layer1 decode`: reported as a truncated capture, not a failure.
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let s = decode_from(&cap[..], &mut out, &mut err).unwrap();
    assert!(s.truncated);
    assert_eq!(s.records, 0);
}

#[test]
fn not_a_capture_and_missing_file_fail_with_exit_1() {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let e = decode_from(&b"{\"not\":\"a capture\"}"[..], &mut out, &mut err).unwrap_err();
    assert!(matches!(e, DecodeError::Capture(_)));
    assert_eq!(e.exit_code(), 1);
    let e = run_decode(
        Some(std::path::Path::new("/nonexistent/x.l1cap")),
        &mut out,
        &mut err,
    )
    .unwrap_err();
    assert!(matches!(e, DecodeError::Open { .. }));
    assert_eq!(e.exit_code(), 1);
}

#[test]
fn decodes_from_a_file() {
    let dir = std::env::temp_dir().join(format!("layer1-decode-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("day.l1cap");
    std::fs::write(&path, capture()).unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let s = run_decode(Some(&path), &mut out, &mut err).unwrap();
    assert_eq!(s.ticks, 5);
    std::fs::remove_dir_all(&dir).unwrap();
}
