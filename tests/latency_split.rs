//! The hand-off histograms tell the frames a socket read completed first from those that came in
//! the same read behind them (`latency::handoff_first_of_read`,
//! `latency::handoff_ticks_first_of_read`), which is how the e2e bench separates the engine's own
//! hand-off from the wait a sender's burst adds. This binary holds one test so that nothing else
//! records into the process's histograms meanwhile.

// Test code: a panic is the failure report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use layer1::{
    feed::{FrameHandler, FrameMeta},
    latency,
    parsers::{
        kite::{self, KiteMode},
        FrameKind,
    },
    pipeline::Pipeline,
    producer::{self, Outbound},
    tick::{Tick, Token},
    validate::ValidationLimits,
    vendor::Vendor,
};

/// A Kite frame of `n` LTP packets for NSE equities (valid ticks: a positive price, no times).
fn kite_ltp_frame(n: u32, out: &mut Vec<u8>) {
    let packets: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut t = Tick::EMPTY;
            t.vendor = Vendor::Kite;
            t.token = Token::from_u32(((1000 + i) << 8) | 1);
            t.ltp = 100.0 + f64::from(i);
            let mut p = Vec::new();
            kite::encode_packet(&t, KiteMode::Ltp, &mut p);
            p
        })
        .collect();
    let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
    kite::encode_frame(&refs, out);
}

#[test]
fn only_the_first_frame_of_each_read_counts_as_first() {
    let (tx, mut rx) = producer::queue(1 << 12);
    let mut p = Pipeline::new(tx, ValidationLimits::default(), false);
    let base = 1_732_700_000_500_000_000u64;
    // (connection, read's receive time): frames that share both came in one read.
    let frames = [
        (1u16, base),
        (1, base),
        (1, base),
        (1, base + 1_000),
        (1, base + 2_000),
        (1, base + 2_000),
        // Another connection's read at the same instant is a read of its own.
        (2, base + 2_000),
        (2, base + 2_000),
    ];
    let first = [true, false, false, true, true, false, true, false];
    let (mut ticks, mut first_ticks) = (0u64, 0u64);
    let mut frame = Vec::new();
    let mut sent = 0;
    for (i, (&(conn, at), &is_first)) in frames.iter().zip(&first).enumerate() {
        frame.clear();
        kite_ltp_frame(3 + i as u32, &mut frame);
        let meta = FrameMeta {
            conn,
            vendor: Vendor::Kite,
            kind: FrameKind::Binary,
            received_at_ns: at,
        };
        p.frame(&meta, &frame);
        let mut handed = 0;
        while let Ok(item) = rx.try_recv() {
            handed += u64::from(matches!(item, Outbound::Tick(_)));
        }
        assert_eq!(handed, 3 + i as u64, "frame {i}: every tick is valid");
        sent += 1;
        ticks += handed;
        if is_first {
            first_ticks += handed;
        }
    }
    assert_eq!(latency::handoff().count(), sent);
    assert_eq!(latency::handoff_first_of_read().count(), 4);
    assert_eq!(latency::handoff_ticks().count(), ticks);
    assert_eq!(latency::handoff_ticks_first_of_read().count(), first_ticks);
    assert!(first_ticks < ticks);
}
