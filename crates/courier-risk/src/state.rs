//! What risk remembers per account, bounded in memory: the times of its recent attempts (for velocity rules) and
//! the merchants it has used (for the first-use rule).
//!
//! **Bounds.** At most `max_accounts` accounts, each with at most `attempts_needed` attempt times (the largest
//! velocity `max` + 1 of the rule sets that run; older ones can no longer decide anything) and at most
//! `max_merchants_per_account` merchants (the least recently used is forgotten first: a merchant used again and
//! again is never "new", one unused for long may be treated as new again, which errs on the side of caution).
//!
//! **Eviction.** Accounts live in shards (so concurrent calls rarely wait for one another), each holding two
//! generations: a call touches its account in the young generation (moving it there from the old one if needed);
//! when the young generation is full, the old one is forgotten whole and the young one becomes old. This is a
//! cheap approximation of least-recently-used: O(1) per call with no per-entry bookkeeping, an account seen within
//! the last generation always survives, and memory never exceeds the cap. Clearing everything when full was
//! rejected: a flood of new accounts would then wipe the velocity history of every busy account at once, which is
//! exactly what a fraudster spreading attempts would want. Forgetting an account loses its history (its attempts
//! stop counting), so `max_accounts` should exceed the accounts active within the longest velocity window.
//!
//! **Locks.** A shard's mutex is held for a hash lookup and a few integer operations on short ring buffers; a
//! forgotten generation is dropped after the lock is released, so no caller waits on the deallocation.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::rollout::MAX_WINDOWS;

const MAX_SHARDS: usize = 16;

/// Accounts' recent attempts and merchants used, bounded (see the module docs).
#[derive(Debug)]
pub struct AccountStates {
    shards: Box<[Mutex<Shard>]>,
    /// Keyed hashing of ids: callers choose account and merchant ids, so they must not be able to choose colliding
    /// keys (which would merge two accounts' histories, or slow a shard's map down).
    keys: RandomState,
    /// Most accounts in one generation of one shard.
    generation_cap: usize,
    max_merchants: usize,
}

/// An attempt's account and merchant, hashed once per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keys {
    account: u64,
    merchant: u64,
}

/// What the rules need to know about an account, read while recording an attempt.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    attempts: [(u64, u32); MAX_WINDOWS],
    windows: usize,
    /// No record of the account using the merchant.
    pub first_use_of_merchant: bool,
}

impl Observation {
    /// For each window asked about (whole milliseconds): the attempts within it, this one included.
    pub fn attempts(&self) -> &[(u64, u32)] {
        &self.attempts[..self.windows]
    }
}

type AccountMap = HashMap<u64, Account, BuildHasherDefault<KeyHasher>>;

#[derive(Debug, Default)]
struct Shard {
    young: AccountMap,
    old: AccountMap,
}

#[derive(Debug, Default)]
struct Account {
    /// Attempt times in milliseconds, oldest first, never decreasing.
    attempts: VecDeque<u64>,
    /// Merchant keys, least recently used first.
    merchants: VecDeque<u64>,
}

impl AccountStates {
    /// Room for at most `max_accounts` accounts (at least 2) and `max_merchants` merchants each (at least 1).
    pub fn new(max_accounts: usize, max_merchants: usize) -> Self {
        let shards = (max_accounts / 2).clamp(1, MAX_SHARDS);
        let generation_cap = (max_accounts / shards / 2).max(1);
        Self {
            shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
            keys: RandomState::new(),
            generation_cap,
            max_merchants: max_merchants.max(1),
        }
    }

    /// The keys of an attempt's account and merchant.
    pub fn keys(&self, account_id: &str, merchant_id: &str) -> Keys {
        Keys { account: self.keys.hash_one(account_id), merchant: self.keys.hash_one(merchant_id) }
    }

    /// Records an attempt at `now_ms`, keeping at most `keep` attempt times, and counts the account's attempts
    /// within each of `windows` (milliseconds; the first [`MAX_WINDOWS`] are counted). A merchant the account has
    /// used becomes its most recently used.
    pub fn observe(&self, keys: Keys, now_ms: u64, windows: &[u64], keep: usize) -> Observation {
        let mut observation = Observation { attempts: [(0, 0); MAX_WINDOWS], windows: 0, first_use_of_merchant: true };
        let forgotten = {
            let mut shard = self.shard(keys.account);
            let (account, forgotten) = shard.touch(keys.account, self.generation_cap);
            account.record_attempt(now_ms, keep);
            for (slot, &window) in observation.attempts.iter_mut().zip(windows) {
                *slot = (window, account.attempts_within(now_ms, window));
                observation.windows += 1;
            }
            observation.first_use_of_merchant = !account.refresh_merchant(keys.merchant);
            forgotten
        };
        drop(forgotten);
        observation
    }

    /// Remembers that the account used the merchant (a no-op if the account was forgotten meanwhile).
    pub fn remember_merchant(&self, keys: Keys) {
        let mut shard = self.shard(keys.account);
        let shard = &mut *shard;
        let account = match shard.young.get_mut(&keys.account) {
            Some(account) => Some(account),
            None => shard.old.get_mut(&keys.account),
        };
        if let Some(account) = account {
            account.add_merchant(keys.merchant, self.max_merchants);
        }
    }

    /// Accounts remembered now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).len()).sum()
    }

    /// Whether no account is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most accounts ever remembered at once (at most the `max_accounts` asked for).
    pub fn capacity(&self) -> usize {
        self.shards.len() * 2 * self.generation_cap
    }

    /// Merchants remembered for an account (for tests and diagnostics).
    pub fn merchants_of(&self, account_id: &str) -> usize {
        let key = self.keys.hash_one(account_id);
        let shard = self.shard(key);
        shard.young.get(&key).or_else(|| shard.old.get(&key)).map_or(0, |account| account.merchants.len())
    }

    fn shard(&self, account: u64) -> MutexGuard<'_, Shard> {
        // The top bits of a multiplicative mix pick the shard: they depend on every bit of the key, so keys within
        // one shard still differ in the bits its map uses.
        let index = (account.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize % self.shards.len();
        lock(&self.shards[index])
    }
}

/// A poisoned shard is still consistent (every update is a single collection operation), so it stays in use.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shard {
    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    /// The account, in the young generation (created or moved there), and the generation forgotten to make room,
    /// if one was, for the caller to drop after unlocking.
    fn touch(&mut self, key: u64, cap: usize) -> (&mut Account, Option<AccountMap>) {
        let mut forgotten = None;
        if !self.young.contains_key(&key) {
            let account = self.old.remove(&key).unwrap_or_default();
            if self.young.len() >= cap {
                let young =
                    std::mem::replace(&mut self.young, AccountMap::with_capacity_and_hasher(cap, Default::default()));
                forgotten = Some(std::mem::replace(&mut self.old, young));
            }
            self.young.insert(key, account);
        }
        (self.young.entry(key).or_default(), forgotten)
    }
}

impl Account {
    fn record_attempt(&mut self, now_ms: u64, keep: usize) {
        if keep == 0 {
            // No velocity rule runs: free the history rather than keep an empty buffer per account.
            if self.attempts.capacity() > 0 {
                self.attempts = VecDeque::new();
            }
            return;
        }
        // Kept in order even if the system clock steps back: the attempt is stamped no earlier than the last one.
        let stamp = self.attempts.back().map_or(now_ms, |&last| last.max(now_ms));
        while self.attempts.len() >= keep {
            self.attempts.pop_front();
        }
        if self.attempts.capacity() < keep {
            self.attempts.reserve_exact(keep - self.attempts.len());
        }
        self.attempts.push_back(stamp);
    }

    /// Attempts in the sliding window `(now - window, now]`.
    fn attempts_within(&self, now_ms: u64, window: u64) -> u32 {
        let cutoff = now_ms.saturating_sub(window);
        (self.attempts.len() - self.attempts.partition_point(|&t| t <= cutoff)) as u32
    }

    /// Whether the merchant is known; if it is, it becomes the most recently used.
    fn refresh_merchant(&mut self, merchant: u64) -> bool {
        match self.merchants.iter().position(|&m| m == merchant) {
            Some(index) => {
                self.merchants.remove(index);
                self.merchants.push_back(merchant);
                true
            }
            None => false,
        }
    }

    fn add_merchant(&mut self, merchant: u64, max: usize) {
        if self.refresh_merchant(merchant) {
            return;
        }
        while self.merchants.len() >= max {
            self.merchants.pop_front();
        }
        self.merchants.push_back(merchant);
    }
}

/// Keys are already keyed SipHash outputs: hashing them again would only cost time.
#[derive(Debug, Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the maps' keys are u64); this keeps the trait whole.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: u64 = 60_000;

    #[test]
    fn attempts_count_within_a_sliding_window() {
        let states = AccountStates::new(100, 8);
        let keys = states.keys("acct_a", "shop");
        let t0 = 1_000_000;
        for n in 1..=3 {
            let seen = states.observe(keys, t0, &[MINUTE], 10);
            assert_eq!(seen.attempts(), [(MINUTE, n)]);
        }
        // Still inside one millisecond before the window closes on the first three; out of it exactly at the edge.
        assert_eq!(states.observe(keys, t0 + MINUTE - 1, &[MINUTE], 10).attempts(), [(MINUTE, 4)]);
        assert_eq!(states.observe(keys, t0 + MINUTE, &[MINUTE], 10).attempts(), [(MINUTE, 2)]);
        assert_eq!(states.observe(keys, t0 + 10 * MINUTE, &[MINUTE, 1_000], 10).attempts(), [(MINUTE, 1), (1_000, 1)]);
    }

    #[test]
    fn only_the_attempts_needed_are_kept() {
        let states = AccountStates::new(100, 8);
        let keys = states.keys("acct_a", "shop");
        for _ in 0..100 {
            states.observe(keys, 5, &[MINUTE], 4);
        }
        // max + 1 = 4 kept: enough to tell "more than 3" apart, never more memory than that.
        assert_eq!(states.observe(keys, 5, &[MINUTE], 4).attempts(), [(MINUTE, 4)]);
        assert_eq!(states.observe(keys, 5, &[MINUTE], 0).attempts(), [(MINUTE, 0)]);
    }

    #[test]
    fn a_clock_stepping_back_does_not_reorder_attempts() {
        let states = AccountStates::new(100, 8);
        let keys = states.keys("acct_a", "shop");
        states.observe(keys, 10 * MINUTE, &[MINUTE], 10);
        assert_eq!(states.observe(keys, 5 * MINUTE, &[MINUTE], 10).attempts(), [(MINUTE, 2)]);
    }

    #[test]
    fn merchants_are_remembered_least_recently_used_first_out() {
        let states = AccountStates::new(100, 2);
        let first_use =
            |merchant: &str| states.observe(states.keys("acct_a", merchant), 0, &[], 0).first_use_of_merchant;
        let remember = |merchant: &str| states.remember_merchant(states.keys("acct_a", merchant));
        assert!(first_use("a"));
        remember("a");
        assert!(!first_use("a"));
        remember("b");
        assert!(!first_use("a"), "a is now the most recently used");
        remember("c"); // evicts b, the least recently used
        assert!(!first_use("a") && !first_use("c"));
        assert!(first_use("b"));
        assert_eq!(states.merchants_of("acct_a"), 2);
    }

    #[test]
    fn accounts_stay_bounded_and_recent_ones_survive() {
        let states = AccountStates::new(1_000, 4);
        assert!(states.capacity() <= 1_000);
        let busy = states.keys("acct_busy", "shop");
        for i in 0..50_000u64 {
            let keys = states.keys(&format!("acct_{i}"), "shop");
            states.observe(keys, i, &[MINUTE], 4);
            states.remember_merchant(keys);
            // One account keeps coming back; it must never be forgotten.
            if i % 100 == 0 {
                states.observe(busy, i, &[MINUTE], 4);
                states.remember_merchant(busy);
            }
            assert!(states.len() <= states.capacity());
        }
        assert!(states.len() > states.capacity() / 2, "{} of {}", states.len(), states.capacity());
        assert!(!states.observe(busy, 50_000, &[MINUTE], 4).first_use_of_merchant);
    }
}
