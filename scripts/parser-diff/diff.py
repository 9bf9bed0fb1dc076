#!/usr/bin/env python3
"""Differential check: our parsers against the vendors' own decoders.

Reads a capture written by `cargo run --example parser_frames -- random VENDOR N SEED CAP JSONL`
and our decoding of each frame (JSONL, one line per frame), decodes every frame again with the
vendor SDK (Kite: pykiteconnect `KiteTicker._parse_binary`; Upstox: the SDK's generated
`MarketDataFeedV3_pb2.FeedResponse`), and compares every field of the tick schema. Prints the
counts and each difference (first 20); exits 1 on any difference.

Usage: diff.py kite|upstox CAPTURE JSONL
"""
import json
import math
import os
import struct
import sys

os.environ.setdefault("TZ", "UTC")  # pykiteconnect returns naive local datetimes
import time

time.tzset()

MAGIC = b"L1CAP\x00\x00\x01"


def frames(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == MAGIC, "not a capture"
    at = 8
    while at < len(data):
        ts, vendor, kind, conn, ln = struct.unpack_from("<QBBHI", data, at)
        at += 16
        yield data[at : at + ln]
        at += ln


class Diff:
    def __init__(self):
        self.fields = 0
        self.ticks = 0
        self.diffs = []
        self.nonfinite = 0

    def eq(self, where, name, ours, theirs):
        self.fields += 1
        if isinstance(theirs, float) and not math.isfinite(theirs):
            # JSON has no NaN/inf: our encoder writes null (and the validator rejects the tick).
            self.nonfinite += 1
            ok = ours is None
        elif ours is None or theirs is None:
            ok = ours is None and theirs is None
        else:
            ok = ours == theirs
        if not ok:
            self.diffs.append(f"{where} {name}: ours={ours!r} vendor={theirs!r}")

    def keys(self, where, tick, expected):
        self.fields += 1
        got = set(tick) - {"vendor", "token", "exchange", "mode", "instrument", "receivedAt"}
        if got != set(expected):
            self.diffs.append(f"{where} field set: ours={sorted(got)} expected={sorted(expected)}")


KITE_EXCHANGE = {1: "NSE", 2: "NFO", 3: "CDS", 4: "BSE", 5: "BFO", 6: "BCD", 7: "MCX", 8: "MCXSX", 9: "INDICES", 12: "NCO"}


def ms(dt):
    # Vendor datetime (naive, TZ=UTC) -> epoch ms, with 0 meaning "sent 0" (our null).
    if dt is None:
        return None
    v = int(round(dt.timestamp())) * 1000
    return None if v == 0 else v


def kite(cap, jsonl):
    from kiteconnect import KiteTicker

    kt = KiteTicker.__new__(KiteTicker)  # the parser needs no connection state
    d = Diff()
    with open(jsonl) as lines:
        for frame, line in zip(frames(cap), lines):
            ours = json.loads(line)
            theirs = kt._parse_binary(frame)
            i = ours["frame"]
            if ours["rejects"]:
                d.diffs.append(f"frame {i}: we rejected {ours['rejects']}")
            if len(theirs) != len(ours["ticks"]):
                d.diffs.append(f"frame {i}: {len(ours['ticks'])} ticks vs vendor {len(theirs)}")
                continue
            for j, (o, t) in enumerate(zip(ours["ticks"], theirs)):
                w = f"frame {i} tick {j}"
                d.ticks += 1
                d.eq(w, "token", o["token"], str(t["instrument_token"]))
                d.eq(w, "exchange", o["exchange"], KITE_EXCHANGE[t["instrument_token"] & 0xFF])
                d.eq(w, "mode", o["mode"], t["mode"])
                d.eq(w, "ltp", o.get("ltp"), t["last_price"])
                expected = ["ltp"]
                if "ohlc" in t:
                    for k in ("open", "high", "low", "close"):
                        d.eq(w, k, o.get(k), t["ohlc"][k])
                    d.eq(w, "change", o.get("change"), float(t["change"]))
                    expected += ["open", "high", "low", "close", "change"]
                if "volume_traded" in t:
                    for ok, tk in (
                        ("ltq", "last_traded_quantity"),
                        ("atp", "average_traded_price"),
                        ("volume", "volume_traded"),
                        ("totalBuyQty", "total_buy_quantity"),
                        ("totalSellQty", "total_sell_quantity"),
                    ):
                        d.eq(w, ok, o.get(ok), t[tk])
                        expected.append(ok)
                if "exchange_timestamp" in t:
                    d.eq(w, "exchangeTime", o.get("exchangeTime"), ms(t["exchange_timestamp"]))
                    expected.append("exchangeTime")
                if "depth" in t:
                    d.eq(w, "lastTradeTime", o.get("lastTradeTime"), ms(t["last_trade_time"]))
                    for ok, tk in (("oi", "oi"), ("oiDayHigh", "oi_day_high"), ("oiDayLow", "oi_day_low")):
                        d.eq(w, ok, o.get(ok), t[tk])
                    expected += ["lastTradeTime", "oi", "oiDayHigh", "oiDayLow", "depth"]
                    for side, vside in (("bids", "buy"), ("asks", "sell")):
                        ol, tl = o["depth"][side], t["depth"][vside]
                        d.eq(w, f"depth.{side}.len", len(ol), len(tl))
                        for k, (a, b) in enumerate(zip(ol, tl)):
                            d.eq(w, f"depth.{side}[{k}].price", a["price"], b["price"])
                            d.eq(w, f"depth.{side}[{k}].qty", a["qty"], b["quantity"])
                            d.eq(w, f"depth.{side}[{k}].orders", a["orders"], b["orders"])
                d.keys(w, o, expected)
    return d


UPSTOX_EXCHANGE = {
    "NSE_EQ": "NSE", "NSE_INDEX": "NSE", "NSE_FO": "NFO", "BSE_EQ": "BSE", "BSE_INDEX": "BSE",
    "BSE_FO": "BFO", "NCD_FO": "CDS", "BCD_FO": "BCD", "MCX_FO": "MCX",
}


def upstox(cap, jsonl):
    from upstox_client.feeder.proto import MarketDataFeedV3_pb2 as pb

    d = Diff()

    def nz(v):
        return None if v == 0 else v

    def ltpc(w, o, l, expected):
        d.eq(w, "ltp", o.get("ltp"), l.ltp)
        d.eq(w, "lastTradeTime", o.get("lastTradeTime"), nz(l.ltt))
        d.eq(w, "ltq", o.get("ltq"), l.ltq)
        d.eq(w, "close", o.get("close"), l.cp)
        change = 0.0 if l.cp == 0 else (l.ltp - l.cp) * 100 / l.cp
        d.eq(w, "change", o.get("change"), change)
        expected += ["ltp", "lastTradeTime", "ltq", "close", "change", "exchangeTime"]

    def ohlc(w, o, m, expected):
        day = next((c for c in m.ohlc if c.interval == "1d"), None)
        if day is not None:
            for k in ("open", "high", "low"):
                d.eq(w, k, o.get(k), getattr(day, k))
            expected += ["open", "high", "low"]

    def greeks(w, o, g, expected):
        for k in ("delta", "theta", "gamma", "vega", "rho"):
            d.eq(w, f"greeks.{k}", o["greeks"][k] if "greeks" in o else "absent", getattr(g, k))
        expected.append("greeks")

    def depth(w, o, quotes, expected):
        quotes = list(quotes)[:5]
        for side, qf, pf in (("bids", "bidQ", "bidP"), ("asks", "askQ", "askP")):
            lv = o["depth"][side] if "depth" in o else []
            d.eq(w, f"depth.{side}.len", len(lv), len(quotes))
            for k, (a, q) in enumerate(zip(lv, quotes)):
                d.eq(w, f"depth.{side}[{k}].price", a["price"], getattr(q, pf))
                d.eq(w, f"depth.{side}[{k}].qty", a["qty"], getattr(q, qf))
                d.eq(w, f"depth.{side}[{k}].orders", a["orders"], None)
        expected.append("depth")

    with open(jsonl) as lines:
        for frame, line in zip(frames(cap), lines):
            ours = json.loads(line)
            resp = pb.FeedResponse()
            resp.ParseFromString(frame)
            i = ours["frame"]
            if ours["rejects"]:
                d.diffs.append(f"frame {i}: we rejected {ours['rejects']}")
            by_token = {t["token"]: t for t in ours["ticks"]}
            if set(by_token) != set(resp.feeds.keys()) or len(by_token) != len(ours["ticks"]):
                d.diffs.append(f"frame {i}: keys {sorted(by_token)} vs vendor {sorted(resp.feeds.keys())}")
                continue
            for key, feed in resp.feeds.items():
                o = by_token[key]
                w = f"frame {i} {key}"
                d.ticks += 1
                expected = []
                d.eq(w, "exchange", o["exchange"], UPSTOX_EXCHANGE[key.split("|")[0]])
                d.eq(w, "exchangeTime", o.get("exchangeTime"), nz(resp.currentTs))
                which = feed.WhichOneof("FeedUnion")
                d.eq(w, "mode", o["mode"], {"ltpc": "ltp", "fullFeed": "full", "firstLevelWithGreeks": "greeks"}[which])
                if which == "ltpc":
                    ltpc(w, o, feed.ltpc, expected)
                elif which == "fullFeed":
                    sub = feed.fullFeed.WhichOneof("FullFeedUnion")
                    if sub == "marketFF":
                        m = feed.fullFeed.marketFF
                        ltpc(w, o, m.ltpc, expected)
                        for ok, tk in (("atp", "atp"), ("volume", "vtt"), ("oi", "oi"), ("iv", "iv"), ("totalBuyQty", "tbq"), ("totalSellQty", "tsq")):
                            d.eq(w, ok, o.get(ok), getattr(m, tk))
                            expected.append(ok)
                        if m.HasField("marketLevel"):
                            depth(w, o, m.marketLevel.bidAskQuote, expected)
                        if m.HasField("optionGreeks"):
                            greeks(w, o, m.optionGreeks, expected)
                        ohlc(w, o, m.marketOHLC, expected)
                    else:
                        m = feed.fullFeed.indexFF
                        ltpc(w, o, m.ltpc, expected)
                        ohlc(w, o, m.marketOHLC, expected)
                else:
                    m = feed.firstLevelWithGreeks
                    ltpc(w, o, m.ltpc, expected)
                    for ok, tk in (("volume", "vtt"), ("oi", "oi"), ("iv", "iv")):
                        d.eq(w, ok, o.get(ok), getattr(m, tk))
                        expected.append(ok)
                    if m.HasField("firstDepth"):
                        depth(w, o, [m.firstDepth], expected)
                    if m.HasField("optionGreeks"):
                        greeks(w, o, m.optionGreeks, expected)
                d.keys(w, o, expected)
    return d


def main():
    vendor, cap, jsonl = sys.argv[1:4]
    d = {"kite": kite, "upstox": upstox}[vendor](cap, jsonl)
    nframes = sum(1 for _ in open(jsonl))
    print(
        f"{vendor}: {nframes} frames, {d.ticks} ticks, {d.fields} field comparisons, "
        f"{len(d.diffs)} differences ({d.nonfinite} non-finite vendor values seen as null)"
    )
    for line in d.diffs[:20]:
        print("  " + line)
    sys.exit(1 if d.diffs else 0)


if __name__ == "__main__":
    main()
