//! Microbenchmarks of the engines without Python (criterion): the memory store's hit and
//! insert paths, SIEVE eviction churn, the shared engine over heap regions, and the codec.
//!
//!     cargo bench --no-default-features --bench stores       # or: make bench-rust
//!
//! Results land in `target/criterion/`; `benches/report.py` lists them in
//! `docs/benchmarks.md` when they are there. Loom and shuttle builds compile an empty main.

#[cfg(not(any(loom, shuttle)))]
mod stores {
    use criterion::{BatchSize, Criterion, Throughput};
    use std::hint::black_box;
    use warp_cache::codec::{decode, encode, Leaf, Value};
    use warp_cache::memory::{spread_hash, Get, Insert, Shard, ShardLock, Store};
    use warp_cache::shared::{HeapRegion, LockOwner, Params, ValueBuf};
    use warp_cache::sync::{RwLock, ShardedLock};

    /// Entries in the hit benchmarks; the Python harness uses the same size.
    const HOT: u64 = 256;
    /// Keys per iteration of the batched benchmarks.
    const BATCH: u64 = 1024;

    fn insert<L: ShardLock<Shard<u64, u64>>>(store: &Store<u64, u64, L>, key: u64) {
        match store.insert(spread_hash(key), key, key, &[], 0, u64::MAX) {
            Insert::Done(garbage) => drop(black_box(garbage)),
            Insert::NotCached(..) => {}
            Insert::Undecided(..) => unreachable!("u64 keys are always decidable"),
        }
    }

    fn hit<L: ShardLock<Shard<u64, u64>>>(store: &Store<u64, u64, L>, key: u64) -> u64 {
        match store.get(spread_hash(key), &key, &[], 0) {
            Get::Hit(value) => value,
            Get::Miss => panic!("key {key} should be cached"),
            Get::Undecided(_) => unreachable!("u64 keys are always decidable"),
        }
    }

    fn memory_hits<L: ShardLock<Shard<u64, u64>>>(c: &mut Criterion, lock: &str, shards: usize) {
        let store = Store::<u64, u64, L>::new(HOT as usize, shards);
        for key in 0..HOT {
            insert(&store, key);
        }
        let mut group = c.benchmark_group("memory");
        group.throughput(Throughput::Elements(BATCH));
        group.bench_function(format!("get hit, {lock}, {HOT} entries"), |b| {
            b.iter(|| {
                let mut sum = 0u64;
                for i in 0..BATCH {
                    sum = sum.wrapping_add(hit(&store, black_box(i % HOT)));
                }
                sum
            })
        });
        group.bench_function(format!("get miss, {lock}, {HOT} entries"), |b| {
            b.iter(|| {
                let mut found = 0u64;
                for i in 0..BATCH {
                    let key = black_box(HOT + i);
                    if let Get::Hit(v) = store.get(spread_hash(key), &key, &[], 0) {
                        found = found.wrapping_add(v);
                    }
                }
                found
            })
        });
        group.finish();
    }

    fn memory_inserts(c: &mut Criterion) {
        type RwStore = Store<u64, u64, RwLock<Shard<u64, u64>>>;
        let mut group = c.benchmark_group("memory");
        group.throughput(Throughput::Elements(BATCH));
        // Inserts into a cache with room: no eviction (a fresh store per batch).
        group.bench_function("insert with room, RwLock", |b| {
            b.iter_batched(
                || RwStore::new(BATCH as usize, 1),
                |store| {
                    for key in 0..BATCH {
                        insert(&store, black_box(key));
                    }
                    store
                },
                BatchSize::SmallInput,
            )
        });
        // Always-new keys into a full cache: every insert runs the SIEVE hand and evicts.
        for (label, visited_share) in [("no entry visited", 0u64), ("half visited", 2)] {
            let store = RwStore::new(HOT as usize, 1);
            for key in 0..HOT {
                insert(&store, key);
            }
            let mut next = HOT;
            group.bench_function(format!("SIEVE churn, {HOT} entries, {label}"), |b| {
                b.iter(|| {
                    for _ in 0..BATCH {
                        if visited_share != 0 && next % visited_share == 0 {
                            // Touch a recent key so the hand meets visited entries.
                            if let Get::Hit(v) =
                                store.get(spread_hash(next - 1), &(next - 1), &[], 0)
                            {
                                black_box(v);
                            }
                        }
                        insert(&store, black_box(next));
                        next += 1;
                    }
                })
            });
        }
        group.finish();
    }

    /// The shared engine's writer identity: one live "process".
    struct BenchOwner;

    impl LockOwner for BenchOwner {
        fn id(&self) -> u64 {
            1
        }
        fn is_alive(&self, _owner: u64) -> bool {
            true
        }
    }

    fn int_key(i: u64, out: &mut Vec<u8>) {
        out.clear();
        encode(&Value::Leaf(Leaf::Int(i as i64)), out);
    }

    fn shared_engine(c: &mut Criterion) {
        let params = Params {
            capacity: HOT as u32,
            max_key_size: 512,
            max_value_size: 4096,
            ttl_ns: None,
            max_bytes: None,
        };
        let region = HeapRegion::new(params).expect("small parameters fit");
        let engine = region.engine();
        let keys: Vec<Vec<u8>> = (0..HOT + BATCH)
            .map(|i| {
                let mut key = Vec::new();
                int_key(i, &mut key);
                key
            })
            .collect();
        for key in &keys[..HOT as usize] {
            engine
                .insert(key, key, 0, u64::MAX, &BenchOwner)
                .expect("heap regions never go stale");
        }
        let mut group = c.benchmark_group("shared");
        group.throughput(Throughput::Elements(BATCH));
        let mut out = ValueBuf::new();
        group.bench_function(format!("get hit, {HOT} entries"), |b| {
            b.iter(|| {
                for i in 0..BATCH {
                    let key = &keys[(i % HOT) as usize];
                    let hit = engine.get(black_box(key), 0, &mut out);
                    assert_eq!(hit, Ok(true));
                }
            })
        });
        group.bench_function(format!("get miss, {HOT} entries"), |b| {
            b.iter(|| {
                for key in &keys[HOT as usize..] {
                    black_box(engine.get(black_box(key), 0, &mut out)).ok();
                }
            })
        });
        // Always-new keys into a full region: lock, SIEVE eviction, slot write, unlock.
        let mut next = 0u64;
        let mut key = Vec::with_capacity(16);
        group.bench_function(format!("insert with eviction, {HOT} entries"), |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    int_key(1_000_000 + next, &mut key);
                    next += 1;
                    let outcome = engine.insert(black_box(&key), &key, 0, u64::MAX, &BenchOwner);
                    black_box(outcome).ok();
                }
            })
        });
        group.finish();
    }

    fn codec(c: &mut Criterion) {
        let text = "a twenty-char string";
        // Ten fields of the four kinds (str, int, float, bool), as in issue 15's payload.
        let fields = [
            "id", "name", "email", "score", "active", "age", "balance", "admin", "team", "visits",
        ];
        let record: Vec<(Value<'_>, Value<'_>)> = fields
            .iter()
            .zip([
                Leaf::Int(12_345),
                Leaf::Str("user12345"),
                Leaf::Str("user12345@example.com"),
                Leaf::Float(3086.25),
                Leaf::Bool(false),
                Leaf::Int(65),
                Leaf::Float(18514.5),
                Leaf::Bool(false),
                Leaf::Str("blue"),
                Leaf::Int(38_035),
            ])
            .map(|(k, v)| (Value::Leaf(Leaf::Str(k)), Value::Leaf(v)))
            .collect();
        let cases: [(&str, Value<'_>); 6] = [
            ("int", Value::Leaf(Leaf::Int(123_456_789))),
            ("str 20", Value::Leaf(Leaf::Str(text))),
            (
                "tuple (int, str, float)",
                Value::Tuple(vec![
                    Value::Leaf(Leaf::Int(7)),
                    Value::Leaf(Leaf::Str(text)),
                    Value::Leaf(Leaf::Float(0.5)),
                ]),
            ),
            ("dict of 10 fields", Value::Dict(record)),
            (
                "list of 100 ints",
                Value::List((0..100).map(|i| Value::Leaf(Leaf::Int(i * 1000))).collect()),
            ),
            (
                "3-level nested tuple",
                Value::Tuple(vec![
                    Value::Leaf(Leaf::Int(7)),
                    Value::Tuple(vec![
                        Value::Leaf(Leaf::Str("a7")),
                        Value::Tuple(vec![Value::Leaf(Leaf::Float(0.5)), Value::Leaf(Leaf::None)]),
                    ]),
                ]),
            ),
        ];
        let mut group = c.benchmark_group("codec");
        for (name, value) in &cases {
            let mut out = Vec::with_capacity(64);
            group.bench_function(format!("encode {name}"), |b| {
                b.iter(|| {
                    out.clear();
                    encode(black_box(value), &mut out);
                    out.len()
                })
            });
            let bytes = out.clone();
            group.bench_function(format!("decode {name}"), |b| {
                b.iter(|| decode(black_box(&bytes)).expect("valid encoding"))
            });
        }
        group.finish();
    }

    pub fn run() {
        let mut c = Criterion::default().configure_from_args();
        memory_hits::<RwLock<Shard<u64, u64>>>(&mut c, "RwLock", 1);
        memory_hits::<ShardedLock<Shard<u64, u64>>>(&mut c, "ShardedLock", 1);
        memory_inserts(&mut c);
        shared_engine(&mut c);
        codec(&mut c);
        c.final_summary();
    }
}

fn main() {
    #[cfg(not(any(loom, shuttle)))]
    stores::run();
}
