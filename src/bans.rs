//! Kicks that hold, revoked tokens and call blocks: who may not come back into which channel
//! until when, which token IDs (`jti`) are refused, and whose calls each user refuses. Checked in memory on every join and upgrade;
//! kept in the server's database (the call log's file, tables of their own) so that a restart
//! forgets nothing. Writes go to the database in order on a thread of their own, never on an
//! actor's thread.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender};

use dashmap::DashMap;
use rusqlite::{params, Connection};

use crate::ids::{ChannelId, Identity};

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS channel_bans (
        channel   TEXT    NOT NULL,
        identity  TEXT    NOT NULL,
        until_ms  INTEGER NOT NULL,
        PRIMARY KEY (channel, identity)
    );
    CREATE TABLE IF NOT EXISTS revoked_tokens (
        jti       TEXT    NOT NULL PRIMARY KEY,
        until_ms  INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS call_blocks (
        blocker   TEXT    NOT NULL,
        blocked   TEXT    NOT NULL,
        PRIMARY KEY (blocker, blocked)
    );
";

/// Identities one user may block: a block list is a person's, not a spam filter's.
pub const MAX_BLOCKS_PER_USER: usize = 1_000;

/// Entries kept at most: beyond it the soonest to expire go first (each is a few dozen bytes).
const MAX_ENTRIES: usize = 1_000_000;

type Write = Box<dyn FnOnce(&Connection) -> rusqlite::Result<usize> + Send>;

/// Writes waiting for the database; kicks and revocations are rare, so this is slack.
const WRITES: usize = 1024;

pub struct Bans {
    channels: DashMap<(ChannelId, Identity), u64>,
    tokens: DashMap<String, u64>,
    /// Blocker → the callers it refuses.
    blocks: DashMap<Identity, BTreeSet<Identity>>,
    db: Option<SyncSender<Write>>,
}

impl Bans {
    /// Bans kept in memory only (tests, `:memory:` databases).
    pub fn in_memory() -> Self {
        Self {
            channels: DashMap::new(),
            tokens: DashMap::new(),
            blocks: DashMap::new(),
            db: None,
        }
    }

    /// Opens (or creates) the tables in `database` and loads what has not expired at `now_ms`.
    pub fn open(database: &str, now_ms: u64) -> rusqlite::Result<Self> {
        if database == ":memory:" {
            return Ok(Self::in_memory());
        }
        let conn = Connection::open(Path::new(database))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        conn.execute(
            "DELETE FROM channel_bans WHERE until_ms <= ?1",
            params![now_ms as i64],
        )?;
        conn.execute(
            "DELETE FROM revoked_tokens WHERE until_ms <= ?1",
            params![now_ms as i64],
        )?;
        let channels = DashMap::new();
        {
            let mut stmt = conn.prepare("SELECT channel, identity, until_ms FROM channel_bans")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            for row in rows {
                let (c, i, until) = row?;
                if let (Ok(c), Ok(i)) = (ChannelId::parse(&c), Identity::parse(&i)) {
                    channels.insert((c, i), until as u64);
                }
            }
        }
        let tokens = DashMap::new();
        {
            let mut stmt = conn.prepare("SELECT jti, until_ms FROM revoked_tokens")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (jti, until) = row?;
                tokens.insert(jti, until as u64);
            }
        }
        let blocks: DashMap<Identity, BTreeSet<Identity>> = DashMap::new();
        {
            let mut stmt = conn.prepare("SELECT blocker, blocked FROM call_blocks")?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            for row in rows {
                let (by, who) = row?;
                if let (Ok(by), Ok(who)) = (Identity::parse(&by), Identity::parse(&who)) {
                    blocks.entry(by).or_default().insert(who);
                }
            }
        }
        let (tx, rx) = sync_channel::<Write>(WRITES);
        std::thread::Builder::new()
            .name("amphi-bans".into())
            .spawn(move || {
                for write in rx {
                    if let Err(e) = write(&conn) {
                        tracing::warn!(error = %e, "a ban or block could not be stored; it holds until restart");
                    }
                }
            })
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(Self {
            channels,
            tokens,
            blocks,
            db: Some(tx),
        })
    }

    /// Until when (unix ms) `identity` may not join `channel`, if it may not at `now_ms`.
    pub fn banned_until(
        &self,
        channel: &ChannelId,
        identity: &Identity,
        now_ms: u64,
    ) -> Option<u64> {
        let key = (channel.clone(), identity.clone());
        let until = *self.channels.get(&key)?;
        if until > now_ms {
            return Some(until);
        }
        self.channels.remove_if(&key, |_, u| *u <= now_ms);
        None
    }

    /// Keeps `identity` out of `channel` until `until_ms`.
    pub fn ban(&self, channel: &ChannelId, identity: &Identity, until_ms: u64) {
        if self.channels.len() >= MAX_ENTRIES {
            self.prune_channels();
        }
        self.channels
            .insert((channel.clone(), identity.clone()), until_ms);
        let (c, i) = (channel.to_string(), identity.to_string());
        self.write(move |db| {
            db.execute(
                "INSERT INTO channel_bans (channel, identity, until_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (channel, identity) DO UPDATE SET until_ms = excluded.until_ms",
                params![c, i, until_ms as i64],
            )
        });
    }

    /// Lets `identity` back into `channel`; whether it was kept out.
    pub fn lift(&self, channel: &ChannelId, identity: &Identity) -> bool {
        let was = self
            .channels
            .remove(&(channel.clone(), identity.clone()))
            .is_some();
        let (c, i) = (channel.to_string(), identity.to_string());
        self.write(move |db| {
            db.execute(
                "DELETE FROM channel_bans WHERE channel = ?1 AND identity = ?2",
                params![c, i],
            )
        });
        was
    }

    pub fn is_revoked(&self, jti: &str, now_ms: u64) -> bool {
        self.tokens.get(jti).is_some_and(|until| *until > now_ms)
    }

    /// Refuses tokens with ID `jti` until `until_ms` (their expiry: after it they are refused
    /// anyway).
    pub fn revoke(&self, jti: &str, until_ms: u64) {
        if self.tokens.len() >= MAX_ENTRIES {
            let now = crate::clock::now_unix_ms();
            self.tokens.retain(|_, until| *until > now);
        }
        self.tokens.insert(jti.to_string(), until_ms);
        let jti = jti.to_string();
        self.write(move |db| {
            db.execute(
                "INSERT INTO revoked_tokens (jti, until_ms) VALUES (?1, ?2)
                 ON CONFLICT (jti) DO UPDATE SET until_ms = excluded.until_ms",
                params![jti, until_ms as i64],
            )
        });
    }

    /// Whether `callee` refuses calls from `caller`.
    pub fn blocks(&self, callee: &Identity, caller: &Identity) -> bool {
        self.blocks
            .get(callee)
            .is_some_and(|set| set.contains(caller))
    }

    /// The callers `user` refuses, in order.
    pub fn blocked_by(&self, user: &Identity) -> Vec<Identity> {
        self.blocks
            .get(user)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// `user` refuses calls from `caller` from now on; false when its list is already full.
    pub fn block(&self, user: &Identity, caller: &Identity) -> bool {
        let mut set = self.blocks.entry(user.clone()).or_default();
        if set.contains(caller) {
            return true;
        }
        if set.len() >= MAX_BLOCKS_PER_USER {
            return false;
        }
        set.insert(caller.clone());
        drop(set);
        let (by, who) = (user.to_string(), caller.to_string());
        self.write(move |db| {
            db.execute(
                "INSERT OR IGNORE INTO call_blocks (blocker, blocked) VALUES (?1, ?2)",
                params![by, who],
            )
        });
        true
    }

    /// `user` takes calls from `caller` again; whether it refused them.
    pub fn unblock(&self, user: &Identity, caller: &Identity) -> bool {
        let was = self
            .blocks
            .get_mut(user)
            .is_some_and(|mut set| set.remove(caller));
        self.blocks.remove_if(user, |_, set| set.is_empty());
        let (by, who) = (user.to_string(), caller.to_string());
        self.write(move |db| {
            db.execute(
                "DELETE FROM call_blocks WHERE blocker = ?1 AND blocked = ?2",
                params![by, who],
            )
        });
        was
    }

    fn prune_channels(&self) {
        let now = crate::clock::now_unix_ms();
        self.channels.retain(|_, until| *until > now);
    }

    fn write(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<usize> + Send + 'static) {
        if let Some(db) = &self.db {
            if db.try_send(Box::new(f)).is_err() {
                tracing::warn!("the ban store is behind; this change holds until restart only");
            }
        }
    }
}
