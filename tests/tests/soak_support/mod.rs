//! What every part of the reliability suite shares: its size (smoke in CI,
//! full under `cargo xtask soak`), its seed, a small seeded random
//! generator, and where a part writes its figures.
//!
//! The suite's parts are ordinary test binaries (`tests/tests/soak_*.rs`,
//! `fuzz_*.rs`, `bad_inputs_*.rs`): `cargo xtask test` runs them at the
//! smoke size, `cargo xtask soak` runs the same code with these variables
//! set and gathers the figures into a report:
//!
//! - `DP_SOAK_SCALE`: fraction of the full size (`1` = full; unset = smoke),
//! - `DP_SOAK_SEED`: the seed (default: a fixed one, so CI is reproducible),
//! - `DP_SOAK_OUT`: directory where each part writes `<part>.json`.

#![allow(dead_code, reason = "each test binary uses a part of this module")]

use std::{path::PathBuf, time::Instant};

use serde_json::Value;

/// The seed CI uses.
pub(crate) const DEFAULT_SEED: u64 = 0x5eed_0013;

pub(crate) fn seed() -> u64 {
    std::env::var("DP_SOAK_SEED")
        .ok()
        .and_then(|s| {
            s.strip_prefix("0x")
                .map_or_else(|| s.parse().ok(), |h| u64::from_str_radix(h, 16).ok())
        })
        .unwrap_or(DEFAULT_SEED)
}

/// `full` scaled by `DP_SOAK_SCALE`, never below `smoke`; `smoke` without it.
pub(crate) fn count(smoke: u64, full: u64) -> u64 {
    match std::env::var("DP_SOAK_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
    {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "sizes are small positive counts"
        )]
        Some(f) if f > 0.0 => ((full as f64 * f).round() as u64).max(smoke),
        _ => smoke,
    }
}

/// Whether this is a full (`cargo xtask soak`) run.
pub(crate) fn full() -> bool {
    std::env::var_os("DP_SOAK_SCALE").is_some()
}

/// xorshift64*: small, seeded, good enough to pick operations and bytes.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A generator of its own for one stream (`tag`), same seed.
    pub(crate) fn stream(tag: &str) -> Rng {
        let mut h = seed();
        for b in tag.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
        }
        Rng::new(h)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    #[expect(
        clippy::cast_possible_truncation,
        reason = "below(n) < n <= usize::MAX"
    )]
    pub(crate) fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let r = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
}

/// A part's figures, written to `$DP_SOAK_OUT/<part>.json` (and printed)
/// when [`Figures::write`] is called.
pub(crate) struct Figures {
    part: &'static str,
    started: Instant,
    pub(crate) values: serde_json::Map<String, Value>,
}

impl Figures {
    pub(crate) fn new(part: &'static str) -> Figures {
        Figures {
            part,
            started: Instant::now(),
            values: serde_json::Map::new(),
        }
    }

    pub(crate) fn set(&mut self, key: &str, v: impl Into<Value>) {
        self.values.insert(key.to_string(), v.into());
    }

    pub(crate) fn add(&mut self, key: &str, n: u64) {
        let cur = self.values.get(key).and_then(Value::as_u64).unwrap_or(0);
        self.values.insert(key.to_string(), (cur + n).into());
    }

    pub(crate) fn get(&self, key: &str) -> u64 {
        self.values.get(key).and_then(Value::as_u64).unwrap_or(0)
    }

    /// Write the figures (with the seed, the scale and the time taken).
    pub(crate) fn write(&mut self) {
        self.set("seed", format!("{:#x}", seed()));
        self.set(
            "scale",
            std::env::var("DP_SOAK_SCALE").unwrap_or_else(|_| "smoke".into()),
        );
        self.set("seconds", self.started.elapsed().as_secs_f64());
        let v = Value::Object(self.values.clone());
        eprintln!("soak figures {}: {v}", self.part);
        if let Some(dir) = std::env::var_os("DP_SOAK_OUT") {
            let dir = PathBuf::from(dir);
            let _ = std::fs::create_dir_all(&dir);
            let path = dir.join(format!("{}.json", self.part));
            std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap())
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        }
    }
}

/// K connections to argv[1]:argv[2], each sending a numbered line and
/// reading its echo every 200 ms until the file argv[4] exists; a JSON
/// report to argv[5].
pub(crate) const MULTI_CLIENT: &str = r#"
import json, os, socket, sys, threading, time
ip, port, k, stop, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
res = {"connected": 0, "exchanges": 0, "failed": 0, "resets": 0, "errors": []}
lock = threading.Lock()
def conn(i):
    try:
        s = socket.create_connection((ip, port), timeout=10)
    except Exception as e:
        with lock:
            res["failed"] += 1
            res["errors"].append("connect: %r" % e)
        return
    s.settimeout(10)
    f = s.makefile("rwb")
    with lock:
        res["connected"] += 1
    n = 0
    while not os.path.exists(stop):
        msg = b"%d %d\n" % (i, n)
        try:
            f.write(msg)
            f.flush()
            line = f.readline()
        except (ConnectionResetError, BrokenPipeError) as e:
            with lock:
                res["resets"] += 1
                res["errors"].append(repr(e))
            return
        except Exception as e:
            with lock:
                res["failed"] += 1
                res["errors"].append(repr(e))
            return
        with lock:
            if line == msg:
                res["exchanges"] += 1
            else:
                res["failed"] += 1
                res["errors"].append("bad echo %r" % line)
                return
        n += 1
        time.sleep(0.2)
    s.close()
ts = [threading.Thread(target=conn, args=(i,)) for i in range(k)]
for t in ts:
    t.start()
    time.sleep(0.01)
print("STARTED", flush=True)
for t in ts:
    t.join()
res["errors"] = res["errors"][:5]
with open(out, "w") as f:
    json.dump(res, f)
"#;
