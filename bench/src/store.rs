//! The client's local store under a large history: insert N messages through
//! `natter::client::store::Store`'s public API, then time opening the latest page of a
//! conversation and full-text searches in English and Chinese, on a fresh SQLite file.
//!
//! The text is generated from a fixed vocabulary with a fixed seed, so runs are comparable:
//! half the messages English, half Chinese; some search terms are common (in ~5% of
//! messages) and some rare (~0.1%), because FTS cost depends on how many rows match.

use anyhow::{Context, Result};
use natter::client::store::Store;
use natter::protocol::{ConvKind, Conversation, Message};
use serde::Serialize;
use std::time::Instant;

const CONVERSATIONS: i64 = 20;
const BATCH: usize = 1_000;
const PAGE: u32 = 50;
const REPEATS: usize = 50;

const EN: &[&str] = &[
    "the", "a", "we", "should", "ship", "release", "today", "tomorrow", "meeting", "review",
    "build", "fix", "bug", "test", "server", "client", "lunch", "coffee", "please", "thanks",
    "design", "draft", "update", "merge", "branch", "deadline", "budget", "report", "call",
    "later", "sounds", "good", "agreed", "maybe", "next", "week", "monday", "friday", "team",
    "project", "customer", "issue", "ticket", "docs", "plan", "quick", "question", "about", "the",
];
const ZH: &[&str] = &[
    "我们",
    "今天",
    "明天",
    "会议",
    "讨论",
    "一下",
    "项目",
    "进度",
    "服务器",
    "客户端",
    "测试",
    "发布",
    "版本",
    "问题",
    "修复",
    "已经",
    "完成",
    "谢谢",
    "好的",
    "没问题",
    "午饭",
    "咖啡",
    "设计",
    "文档",
    "下周",
    "周一",
    "周五",
    "团队",
    "客户",
    "预算",
    "报告",
    "电话",
    "稍后",
    "计划",
    "可以",
    "需要",
    "看看",
    "确认",
    "同意",
    "数据库",
];
/// Injected into about 1 in 1,000 messages: the rare terms.
const RARE_EN: &str = "kubernetes";
const RARE_ZH: &str = "区块链技术";

#[derive(Debug, Clone, Serialize)]
pub struct SearchTiming {
    pub query: String,
    pub note: String,
    pub matching: u64,
    pub hits: usize,
    pub first_ms: f64,
    pub median_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoreResult {
    pub messages: usize,
    pub batch: usize,
    pub insert_secs: f64,
    pub db_bytes: u64,
    pub repeats: usize,
    pub page_first_ms: f64,
    pub page_median_ms: f64,
    pub page_max_ms: f64,
    pub searches: Vec<SearchTiming>,
}

pub(crate) struct Rng(pub(crate) u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Message i's text: 6-14 words of one language, sometimes with a rare term.
pub(crate) fn text(rng: &mut Rng, i: usize) -> String {
    let zh = i % 2 == 1;
    let words = 6 + rng.below(9);
    let mut t = String::new();
    for w in 0..words {
        if zh {
            t.push_str(ZH[rng.below(ZH.len())]);
        } else {
            if w > 0 {
                t.push(' ');
            }
            t.push_str(EN[rng.below(EN.len())]);
        }
    }
    if rng.below(1_000) == 0 {
        t.push_str(if zh { RARE_ZH } else { " kubernetes" });
    }
    t
}

/// Median and maximum of timings (not empty). An even count's median is the mean of the two
/// middle values: the upper one alone made a two-sample median the maximum.
pub(crate) fn median_max(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let median = if n % 2 == 0 {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    } else {
        v[n / 2]
    };
    (median, v[n - 1])
}

fn time_ms<T>(f: impl FnOnce() -> Result<T>) -> Result<(f64, T)> {
    let t = Instant::now();
    let out = f()?;
    Ok((t.elapsed().as_secs_f64() * 1e3, out))
}

pub fn run(messages: usize) -> Result<StoreResult> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("store.db");
    let store = Store::open(&path).context("opening the store")?;
    for c in 1..=CONVERSATIONS {
        store.upsert_conversation(&Conversation {
            id: c,
            kind: ConvKind::Room,
            name: format!("room{c}"),
            peer: None,
            member_count: 10,
            last_seq: 0,
            last_read: 0,
            private: false,
            moderator: false,
        })?;
    }
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let base_time = 1_700_000_000_000i64;
    let t = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    for i in 0..messages {
        let conv = (i as i64 % CONVERSATIONS) + 1;
        batch.push(Message {
            id: i as i64 + 1,
            conv,
            seq: i as i64 / CONVERSATIONS + 1,
            sender: format!("user{}", rng.below(50)),
            text: text(&mut rng, i),
            time: base_time + i as i64 * 1_000,
            client_msg_id: uuid::Uuid::from_u64_pair(0x5eed, i as u64),
            ..Message::default()
        });
        if batch.len() == BATCH || i + 1 == messages {
            store.insert_messages(&batch)?;
            batch.clear();
        }
        if i > 0 && i % 200_000 == 0 {
            eprintln!(
                "  store: {i} messages in {:.1} s",
                t.elapsed().as_secs_f64()
            );
        }
    }
    let insert_secs = t.elapsed().as_secs_f64();
    drop(store);
    let db_bytes = std::fs::metadata(&path)?.len()
        + std::fs::metadata(dir.path().join("store.db-wal"))
            .map(|m| m.len())
            .unwrap_or(0);

    // Reopen: the first query pays for a cold statement cache and page cache, as after launch.
    let store = Store::open(&path)?;
    let conv = 1;
    let (page_first_ms, first) = time_ms(|| Ok(store.page(conv, None, PAGE)?))?;
    anyhow::ensure!(
        first.len() == PAGE as usize,
        "latest page has {} messages",
        first.len()
    );
    let mut pages = Vec::new();
    for _ in 0..REPEATS {
        pages.push(time_ms(|| Ok(store.page(conv, None, PAGE)?))?.0);
    }
    let (page_median_ms, page_max_ms) = median_max(pages);

    let queries = [
        ("meeting", "English, common"),
        (RARE_EN, "English, rare"),
        ("数据库", "Chinese, common, 3 chars"),
        (RARE_ZH, "Chinese, rare"),
        ("会议", "Chinese, common, 2 chars"),
    ];
    let mut searches = Vec::new();
    for (q, note) in queries {
        let (first_ms, hits) = time_ms(|| Ok(store.search(q, None, PAGE)?))?;
        anyhow::ensure!(!hits.is_empty(), "search {q:?} found nothing");
        anyhow::ensure!(
            hits.iter().all(|h| h.message.text.contains(q)),
            "search {q:?} returned a message without the term"
        );
        let mut times = Vec::new();
        for _ in 0..REPEATS / 5 {
            times.push(time_ms(|| Ok(store.search(q, None, PAGE)?))?.0);
        }
        let (median_ms, max_ms) = median_max(times);
        eprintln!("  store: search {q:?}: {first_ms:.2} ms first, {median_ms:.2} ms median");
        searches.push(SearchTiming {
            query: q.to_string(),
            note: note.to_string(),
            matching: 0,
            hits: hits.len(),
            first_ms,
            median_ms,
            max_ms,
        });
    }
    // Counted only once every query is timed: a count materialises up to ~110,000 hits, and
    // glibc merges their freed chunks (malloc_consolidate) lazily, inside the next large
    // allocation. Counted between queries, that cost (~25 ms at 1,000,000 messages, seen with
    // perf) landed in the next query's "first" time.
    for s in &mut searches {
        s.matching = count_matching(&path, &s.query)?;
    }
    Ok(StoreResult {
        messages,
        batch: BATCH,
        insert_secs,
        db_bytes,
        repeats: REPEATS,
        page_first_ms,
        page_median_ms,
        page_max_ms,
        searches,
    })
}

/// How many messages contain `q` (for the table; not timed). Counted by re-generating the texts
/// would cost as much as the insert, so ask SQLite with a plain scan through a second store
/// handle's search with a large limit.
fn count_matching(path: &std::path::Path, q: &str) -> Result<u64> {
    let store = Store::open(path)?;
    Ok(store.search(q, None, u32::MAX)?.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_store_run_measures_pages_and_searches() {
        // 4,000 messages: enough for every query to have hits (rare terms are ~1/1000).
        let r = run(4_000).unwrap();
        assert_eq!(r.messages, 4_000);
        assert!(r.page_median_ms > 0.0);
        assert_eq!(r.searches.len(), 5);
        assert!(r
            .searches
            .iter()
            .all(|s| s.hits > 0 && s.matching >= s.hits as u64));
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median_max(vec![3.0, 1.0, 2.0]), (2.0, 3.0));
        assert_eq!(median_max(vec![30.0, 10.0]), (20.0, 30.0));
        assert_eq!(median_max(vec![4.0, 1.0, 3.0, 2.0]), (2.5, 4.0));
        assert_eq!(median_max(vec![7.0]), (7.0, 7.0));
    }

    #[test]
    fn texts_are_deterministic_and_mixed() {
        let mut a = Rng(7);
        let mut b = Rng(7);
        assert_eq!(text(&mut a, 0), text(&mut b, 0));
        assert!(text(&mut a, 1).chars().any(|c| c > '\u{3000}'));
        assert!(text(&mut a, 2).is_ascii());
    }
}
