//! Connection hygiene: how many connections the server holds, for how long, and which it gives
//! up first when a flood comes.
//!
//! Every connection costs a file descriptor. A client that never finishes its handshake, never
//! sends a whole request head, or never presents a credential could otherwise hold one forever,
//! and about a thousand of them exhaust the default limit of 1,024: `accept` then fails for
//! everyone, operators included. So:
//!
//! - every phase has a deadline (handshake, request head and the wait for the next one on a
//!   kept-alive connection, a stalled request body, a client that stopped reading its answer);
//! - a connection is *unauthenticated* until one of its requests presents a valid credential;
//!   unauthenticated connections are capped per source address and overall. Past a cap the
//!   server closes the unauthenticated connection that has been quiet longest (not the new one):
//!   a flood then only ever evicts itself, and an operator's fresh connection still gets its
//!   turn, whatever address it comes from;
//! - authenticated connections never count against those caps and are never evicted, so agents
//!   and operators already talking keep going during a flood; all connections together stay
//!   below the descriptor limit, with a reserve for the database and the files we open.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

/// Descriptors kept back from connections: the database, its journal, TLS material, logs.
pub const FD_RESERVE: u64 = 128;

/// Deadlines and caps for the listener. [`EdgeConfig::for_fd_limit`] sizes the caps for the
/// process's descriptor limit.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// From accept to a finished TLS handshake.
    pub handshake_timeout: Duration,
    /// From when the server waits for a request head (after the handshake, or after the
    /// previous answer on a kept-alive connection) to its last byte: the slowloris bound, and
    /// how long an idle kept-alive connection is kept.
    pub header_timeout: Duration,
    /// How long a request body may stall, or a client may leave our answer unread, before the
    /// connection is closed.
    pub stall_timeout: Duration,
    /// All connections at once.
    pub max_connections: usize,
    /// Connections that have not yet presented a valid credential, overall.
    pub max_unauthenticated: usize,
    /// Unauthenticated connections from one source address.
    pub max_unauthenticated_per_ip: usize,
    /// How long open connections may finish their requests once shutdown begins.
    pub shutdown_grace: Duration,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig::for_fd_limit(1024)
    }
}

impl EdgeConfig {
    /// Caps that fit `fd_limit` descriptors, keeping [`FD_RESERVE`] back; the unauthenticated
    /// share is at most half of the connections, so that authenticated ones always have room.
    pub fn for_fd_limit(fd_limit: u64) -> EdgeConfig {
        let connections = fd_limit.saturating_sub(FD_RESERVE).clamp(16, 100_000);
        let connections = usize::try_from(connections).unwrap_or(100_000);
        let unauthenticated = (connections / 2).min(4096);
        EdgeConfig {
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(15),
            stall_timeout: Duration::from_secs(30),
            max_connections: connections,
            max_unauthenticated: unauthenticated,
            max_unauthenticated_per_ip: (unauthenticated / 4).clamp(4, 256),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit and returns the soft limit in
/// force afterwards. The default soft limit (1,024) is what a few hundred idle clients need to
/// starve a server; the hard limit is what the administrator (or `LimitNOFILE=`) allows.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
    if soft >= hard {
        return Ok(soft);
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => Ok(hard),
        Err(error) => {
            tracing::warn!("cannot raise the open file limit from {soft} to {hard}: {error}");
            Ok(soft)
        }
    }
}

/// Counts of what the budget did, for `/metrics`-style reporting and the tests.
#[derive(Debug, Default)]
pub struct EdgeCounters {
    /// Connections accepted and given a slot.
    pub admitted: AtomicU64,
    /// New connections closed at once: every slot was held by authenticated connections.
    pub shed: AtomicU64,
    /// Quiet unauthenticated connections closed to make room for a newer one.
    pub evicted: AtomicU64,
    /// `accept` failed for want of descriptors (EMFILE, ENFILE).
    pub fd_exhausted: AtomicU64,
}

/// The connections the listener holds, and which to give up first.
#[derive(Debug)]
pub struct ConnectionBudget {
    limits: EdgeConfig,
    inner: Mutex<Inner>,
    /// Shared with the server's metrics, so `/metrics` shows what the edge did.
    pub counters: Arc<EdgeCounters>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Unauthenticated connections by the sequence number of their last activity: the first
    /// entry is the one quiet longest.
    quiet: BTreeMap<u64, Arc<SlotShared>>,
    per_ip: HashMap<IpAddr, usize>,
    authenticated: usize,
    next: u64,
}

impl Inner {
    fn unauthenticated(&self) -> usize {
        self.quiet.len()
    }

    fn total(&self) -> usize {
        self.quiet.len() + self.authenticated
    }

    fn sequence(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Takes `shared` out of the unauthenticated set (it is still open).
    fn forget(&mut self, shared: &SlotShared) -> bool {
        let at = shared.position.load(Ordering::Relaxed);
        if self.quiet.remove(&at).is_none() {
            return false;
        }
        if let Some(count) = self.per_ip.get_mut(&shared.ip) {
            *count -= 1;
            if *count == 0 {
                self.per_ip.remove(&shared.ip);
            }
        }
        true
    }

    /// Closes the unauthenticated connection quiet longest (from `ip`, if given).
    fn evict_oldest(&mut self, ip: Option<IpAddr>) -> bool {
        let oldest = self
            .quiet
            .values()
            .find(|shared| ip.is_none_or(|ip| shared.ip == ip))
            .cloned();
        match oldest {
            Some(shared) => {
                self.forget(&shared);
                shared.evicted.store(true, Ordering::Relaxed);
                // A stored permit: the connection's task may not be waiting yet.
                shared.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

#[derive(Debug)]
struct SlotShared {
    ip: IpAddr,
    /// The key in `Inner::quiet` while unauthenticated.
    position: AtomicU64,
    authenticated: AtomicBool,
    evicted: AtomicBool,
    evict: Notify,
}

impl ConnectionBudget {
    pub fn new(limits: EdgeConfig) -> ConnectionBudget {
        ConnectionBudget::counting_into(limits, Arc::default())
    }

    /// A budget that counts into `counters` (the server's metrics).
    pub fn counting_into(limits: EdgeConfig, counters: Arc<EdgeCounters>) -> ConnectionBudget {
        ConnectionBudget {
            limits,
            inner: Mutex::default(),
            counters,
        }
    }

    pub fn limits(&self) -> &EdgeConfig {
        &self.limits
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock; a poisoned one still holds consistent counts.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for a new connection from `ip`, evicting the quietest unauthenticated connection
    /// when a cap is reached; `None` when every slot is held by authenticated connections (the
    /// caller closes the new one at once).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut inner = self.lock();
        let mut evicted = 0;
        if inner.total() >= self.limits.max_connections {
            if !inner.evict_oldest(None) {
                drop(inner);
                self.counters.shed.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            evicted += 1;
        }
        if inner.per_ip.get(&ip).copied().unwrap_or(0) >= self.limits.max_unauthenticated_per_ip
            && inner.evict_oldest(Some(ip))
        {
            evicted += 1;
        }
        if inner.unauthenticated() >= self.limits.max_unauthenticated && inner.evict_oldest(None) {
            evicted += 1;
        }
        let position = inner.sequence();
        let shared = Arc::new(SlotShared {
            ip,
            position: AtomicU64::new(position),
            authenticated: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        });
        inner.quiet.insert(position, Arc::clone(&shared));
        *inner.per_ip.entry(ip).or_default() += 1;
        drop(inner);
        self.counters.admitted.fetch_add(1, Ordering::Relaxed);
        self.counters.evicted.fetch_add(evicted, Ordering::Relaxed);
        Some(Slot {
            budget: Arc::clone(self),
            shared,
        })
    }

    /// Closes the quietest unauthenticated connection: the accept loop's answer to running out
    /// of descriptors, so that waiting frees one instead of only hoping for it.
    pub fn evict_quietest(&self) -> bool {
        let evicted = self.lock().evict_oldest(None);
        if evicted {
            self.counters.evicted.fetch_add(1, Ordering::Relaxed);
        }
        evicted
    }

    /// (unauthenticated, authenticated) connections held now.
    pub fn held(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.unauthenticated(), inner.authenticated)
    }
}

/// One connection's place in the budget; dropping it (the connection ended) frees the place.
#[derive(Debug)]
pub struct Slot {
    budget: Arc<ConnectionBudget>,
    shared: Arc<SlotShared>,
}

impl Slot {
    /// What the router's requests carry to mark their connection.
    pub fn handle(&self) -> ConnectionSlot {
        ConnectionSlot {
            budget: Arc::clone(&self.budget),
            shared: Arc::clone(&self.shared),
        }
    }

    /// Resolves when the budget closes this connection to make room.
    pub async fn evicted(&self) {
        self.shared.evict.notified().await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut inner = self.budget.lock();
        if self.shared.authenticated.load(Ordering::Relaxed) {
            inner.authenticated -= 1;
        } else if !self.shared.evicted.load(Ordering::Relaxed) {
            inner.forget(&self.shared);
        }
    }
}

/// A request's connection, in the request's extensions: a request starting moves it to the
/// back of the eviction order, a valid credential takes it out for good.
#[derive(Debug, Clone)]
pub struct ConnectionSlot {
    budget: Arc<ConnectionBudget>,
    shared: Arc<SlotShared>,
}

impl ConnectionSlot {
    /// The connection is busy: the last to be evicted among the unauthenticated.
    pub fn touch(&self) {
        if self.shared.authenticated.load(Ordering::Relaxed) {
            return;
        }
        let mut inner = self.budget.lock();
        // Evicted meanwhile: nothing to move (its task is already closing it).
        if let Some(shared) = inner
            .quiet
            .remove(&self.shared.position.load(Ordering::Relaxed))
        {
            let position = inner.sequence();
            shared.position.store(position, Ordering::Relaxed);
            inner.quiet.insert(position, shared);
        }
    }

    /// A request on this connection presented a valid credential: it no longer counts against
    /// the unauthenticated caps and is never evicted.
    pub fn authenticated(&self) {
        if self.shared.authenticated.load(Ordering::Relaxed) {
            return;
        }
        let mut inner = self.budget.lock();
        if inner.forget(&self.shared) {
            inner.authenticated += 1;
            self.shared.authenticated.store(true, Ordering::Relaxed);
        }
    }

    pub fn is_authenticated(&self) -> bool {
        self.shared.authenticated.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(total: usize, unauthenticated: usize, per_ip: usize) -> Arc<ConnectionBudget> {
        Arc::new(ConnectionBudget::new(EdgeConfig {
            max_connections: total,
            max_unauthenticated: unauthenticated,
            max_unauthenticated_per_ip: per_ip,
            ..EdgeConfig::default()
        }))
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn is_evicted(slot: &Slot) -> bool {
        slot.shared.evicted.load(Ordering::Relaxed)
    }

    #[test]
    fn past_the_per_address_cap_the_quietest_connection_of_that_address_goes() {
        let budget = budget(100, 50, 2);
        let a1 = budget.admit(ip(1)).expect("slot");
        let b1 = budget.admit(ip(2)).expect("slot");
        let a2 = budget.admit(ip(1)).expect("slot");
        a1.handle().touch();
        let a3 = budget.admit(ip(1)).expect("slot");
        assert!(
            is_evicted(&a2),
            "a2 was quiet longest among ip 1 (a1 was touched)"
        );
        assert!(!is_evicted(&a1) && !is_evicted(&b1) && !is_evicted(&a3));
        assert_eq!(budget.held(), (3, 0));
        assert_eq!(budget.counters.evicted.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn past_the_overall_cap_the_quietest_goes_and_authenticated_ones_never_do() {
        let budget = budget(4, 2, 10);
        let operator = budget.admit(ip(9)).expect("slot");
        operator.handle().authenticated();
        let flood: Vec<_> = (0..10)
            .map(|i| budget.admit(ip(i)).expect("slot"))
            .collect();
        assert!(!is_evicted(&operator));
        assert_eq!(flood.iter().filter(|s| !is_evicted(s)).count(), 2);
        assert!(
            !is_evicted(&flood[9]),
            "the newest connection always gets its turn"
        );
        assert_eq!(budget.held(), (2, 1));
        drop(flood);
        assert_eq!(budget.held(), (0, 1));
        drop(operator);
        assert_eq!(budget.held(), (0, 0));
    }

    #[test]
    fn when_authenticated_connections_hold_every_slot_new_ones_are_shed() {
        let budget = budget(2, 2, 2);
        let held: Vec<_> = (0..2)
            .map(|i| {
                let slot = budget.admit(ip(i)).expect("slot");
                slot.handle().authenticated();
                slot
            })
            .collect();
        assert!(budget.admit(ip(7)).is_none());
        assert_eq!(budget.counters.shed.load(Ordering::Relaxed), 1);
        drop(held);
        assert!(budget.admit(ip(7)).is_some());
    }

    #[tokio::test]
    async fn an_evicted_connection_is_told_even_before_it_waits() {
        let budget = budget(10, 1, 10);
        let first = budget.admit(ip(1)).expect("slot");
        let _second = budget.admit(ip(2)).expect("slot");
        tokio::time::timeout(Duration::from_secs(1), first.evicted())
            .await
            .expect("notified");
        assert!(budget.evict_quietest());
        assert!(!budget.evict_quietest(), "nothing unauthenticated is left");
    }

    #[test]
    fn caps_follow_the_descriptor_limit() {
        let small = EdgeConfig::for_fd_limit(1024);
        assert_eq!(small.max_connections, 1024 - FD_RESERVE as usize);
        assert!(small.max_unauthenticated * 2 <= small.max_connections);
        let tiny = EdgeConfig::for_fd_limit(10);
        assert!(tiny.max_connections >= 16 && tiny.max_unauthenticated_per_ip >= 4);
        let large = EdgeConfig::for_fd_limit(1 << 20);
        assert_eq!(large.max_connections, 100_000);
        assert_eq!(large.max_unauthenticated, 4096);
    }

    #[test]
    fn the_soft_descriptor_limit_is_raised_to_the_hard_one() {
        use nix::sys::resource::{Resource, getrlimit};
        let raised = raise_fd_limit().expect("rlimit");
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("rlimit");
        assert_eq!(raised, soft);
        assert_eq!(soft, hard);
    }
}
