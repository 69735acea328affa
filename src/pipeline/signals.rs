//! Signals between instances sharing a PostgreSQL database (`NOTIFY porteiro`): what one instance
//! committed that the others must act on at once rather than when a cache entry expires or a
//! poll comes round. A stored webhook wakes a worker anywhere; an access, catalogue, rule,
//! integration, erasure or key change makes every instance forget what it cached.
//!
//! Best effort by design: a signal lost (a dropped connection, a crash between commit and
//! notify) only costs freshness, which the caches' TTLs and the loops' polls still bound, and a
//! listener that reconnects forgets everything it caches (see [`forget_everything`]).
//!
//! Signals are coalesced: at most one `NOTIFY` every [`PACE`], with everything queued meanwhile
//! merged into it, so a flood costs a few dozen notifications a second, not one per commit.
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// The least time between two `NOTIFY`s of one instance (well inside the one second a revoke
/// may take to reach the other instances).
pub const PACE: std::time::Duration = std::time::Duration::from_millis(25);

/// How long an instance counts as listening after it was last heard from; each says
/// [`Signal::Here`] every [`HERE_EVERY`].
pub const PEER_WINDOW: std::time::Duration = std::time::Duration::from_secs(90);
pub const HERE_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// The channel every instance listens on.
pub const CHANNEL: &str = "porteiro";
/// PostgreSQL refuses payloads of 8,000 bytes and more; past this many shards an access signal
/// names the whole app.
const MAX_SHARDS: usize = 400;

/// One thing another instance must act on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Signal {
    /// An instance started listening: the others answer [`Signal::Here`].
    Hello,
    /// An instance is listening (an answer to a hello, and every half minute).
    Here,
    /// Webhooks were stored: workers, look.
    Inbox,
    /// Notifications were written: the dispatcher, look.
    Outbox,
    /// These shards of the app's buyers changed access.
    Access {
        app: i32,
        shards: Vec<u16>,
    },
    /// Every buyer of the app may have changed (a catalogue change, many shards at once).
    AppAccess {
        app: i32,
    },
    Catalog {
        app: i32,
    },
    Rules {
        app: i32,
    },
    Integration {
        app: i32,
    },
    Erasure {
        app: i32,
    },
    ApiKey {
        id: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    /// The sending instance: it acted on its own signals already.
    from: String,
    s: Vec<Signal>,
}

/// The sending half, in every process; it sends only once [`Signals::enable`]d (a serving
/// process on PostgreSQL), so a CLI command or SQLite pays nothing.
#[derive(Default)]
pub struct Signals {
    enabled: AtomicBool,
    /// Until when another instance is known to listen (ms since the epoch): with nobody else,
    /// nothing is sent but the greetings.
    peers_until: std::sync::atomic::AtomicI64,
    pending: Mutex<BTreeSet<Signal>>,
    ready: Notify,
}

impl Signals {
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    /// Another instance was heard from: it listens for a while yet.
    pub fn heard_a_peer(&self) {
        let until = chrono::Utc::now().timestamp_millis() + PEER_WINDOW.as_millis() as i64;
        self.peers_until.fetch_max(until, Ordering::Relaxed);
    }

    /// Whether another instance was heard from lately.
    pub fn has_peers(&self) -> bool {
        self.peers_until.load(Ordering::Relaxed) > chrono::Utc::now().timestamp_millis()
    }

    /// Queues signals for the next `NOTIFY`.
    /// With no other instance heard from, only the greetings are queued: one instance on
    /// PostgreSQL pays an atomic load per webhook for the signals, nothing more.
    pub fn send(&self, signals: impl IntoIterator<Item = Signal>) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        let alone = !self.has_peers();
        let mut signals = signals
            .into_iter()
            .filter(|s| !alone || matches!(s, Signal::Hello | Signal::Here))
            .peekable();
        if signals.peek().is_none() {
            return;
        }
        let mut p = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = p.len();
        p.extend(signals);
        if p.len() != before {
            drop(p);
            self.ready.notify_one();
        }
    }

    /// Waits for queued signals and takes them all.
    pub async fn next(&self) -> Vec<Signal> {
        loop {
            {
                let mut p = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if !p.is_empty() {
                    return merge(std::mem::take(&mut *p));
                }
            }
            self.ready.notified().await;
        }
    }
}

/// Shards of one app are merged into one signal, and too many shards become the app.
fn merge(set: BTreeSet<Signal>) -> Vec<Signal> {
    let mut out = Vec::new();
    let mut shards: std::collections::BTreeMap<i32, BTreeSet<u16>> = Default::default();
    let mut whole: BTreeSet<i32> = BTreeSet::new();
    for s in set {
        match s {
            Signal::Access { app, shards: sh } => shards.entry(app).or_default().extend(sh),
            Signal::AppAccess { app } => {
                whole.insert(app);
            }
            other => out.push(other),
        }
    }
    for (app, sh) in shards {
        if whole.contains(&app) {
            continue;
        }
        if sh.len() > MAX_SHARDS {
            whole.insert(app);
        } else {
            out.push(Signal::Access {
                app,
                shards: sh.into_iter().collect(),
            });
        }
    }
    out.extend(whole.into_iter().map(|app| Signal::AppAccess { app }));
    out
}

/// The `NOTIFY` of one batch, from this instance.
pub fn envelope(from: &str, batch: Vec<Signal>) -> crate::AppResult<String> {
    serde_json::to_string(&Envelope {
        from: from.to_string(),
        s: batch,
    })
    .map_err(crate::AppError::internal)
}

/// One statement, committed without waiting for the disk: `NOTIFY` gives its transaction an id,
/// so each would otherwise cost a durable commit, and a signal is best effort anyway.
pub async fn notify(db: &DatabaseConnection, payload: &str) -> crate::AppResult<()> {
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, $2)",
        [CHANNEL.into(), payload.into()],
    ))
    .await?;
    Ok(())
}

/// Reads a payload from another instance (`None`: our own, or not ours to read).
pub fn decode(me: &str, payload: &str) -> Option<Vec<Signal>> {
    let e: Envelope = serde_json::from_str(payload).ok()?;
    (e.from != me).then_some(e.s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_merge_per_app_and_too_many_become_the_app() {
        let mut set = BTreeSet::new();
        set.insert(Signal::Inbox);
        set.insert(Signal::Access {
            app: 1,
            shards: vec![3, 5],
        });
        set.insert(Signal::Access {
            app: 1,
            shards: vec![5, 7],
        });
        set.insert(Signal::Access {
            app: 2,
            shards: vec![1],
        });
        set.insert(Signal::AppAccess { app: 2 });
        set.insert(Signal::Access {
            app: 3,
            shards: (0..=MAX_SHARDS as u16).collect(),
        });
        let out = merge(set);
        assert_eq!(
            out,
            vec![
                Signal::Inbox,
                Signal::Access {
                    app: 1,
                    shards: vec![3, 5, 7]
                },
                Signal::AppAccess { app: 2 },
                Signal::AppAccess { app: 3 },
            ]
        );
        // The largest payload stays under PostgreSQL's limit.
        let widest = serde_json::to_string(&Envelope {
            from: "h".repeat(80),
            s: vec![Signal::Access {
                app: i32::MAX,
                shards: (1024 - MAX_SHARDS as u16..1024).collect(),
            }],
        })
        .unwrap();
        assert!(widest.len() < 8000, "{}", widest.len());
    }

    #[tokio::test]
    async fn alone_an_instance_queues_only_its_greetings() {
        let s = Signals::default();
        s.send([Signal::Hello]);
        assert!(s.pending.lock().unwrap().is_empty(), "not enabled: nothing");
        s.enable();
        s.send([Signal::Inbox, Signal::Hello]);
        assert_eq!(s.next().await, vec![Signal::Hello]);
        s.heard_a_peer();
        s.send([Signal::Inbox, Signal::Catalog { app: 1 }]);
        assert_eq!(s.next().await, vec![Signal::Inbox, Signal::Catalog { app: 1 }]);
    }

    #[test]
    fn an_instance_ignores_its_own_signals_and_garbage() {
        let payload = serde_json::to_string(&Envelope {
            from: "a".into(),
            s: vec![Signal::ApiKey { id: "k".into() }],
        })
        .unwrap();
        assert_eq!(decode("a", &payload), None);
        assert_eq!(decode("b", &payload), Some(vec![Signal::ApiKey { id: "k".into() }]));
        assert_eq!(decode("b", "{not json"), None);
    }
}
