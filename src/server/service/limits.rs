//! The sign-in limits (failed sign-ins per address and per account, account creation per
//! address), shared by every node of a cluster: each change made here is published on the bus
//! ([`Event::Limits`]) and made by the other nodes too ([`super::follow_nodes`]), so a budget spent on one
//! node holds on all of them. The rules themselves live in [`auth`].
//!
//! Each node keeps its own copy, changed at its own clock's time, so the copies agree to
//! within the bus's delay; brute force through several nodes at once gains at most the
//! attempts in flight during that delay. On one node nothing is published.

use std::net::IpAddr;
use std::sync::Weak;
use std::time::{Duration, Instant};

use super::super::auth::{AccountDelay, AddressBudget};
use super::super::bus::{Bus, Event, NodeId};
use super::super::store::UserId;
use super::super::ServerConfig;

/// Which per-address budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Budget {
    /// Failed sign-ins.
    SignIn,
    /// Accounts created.
    Registration,
}

/// One change to the limits, as another node must repeat it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LimitChange {
    AddressSpent { budget: Budget, ip: IpAddr },
    AddressRefunded { budget: Budget, ip: IpAddr },
    AccountCharged { user: UserId },
    AccountRefunded { user: UserId },
    AccountSucceeded { user: UserId },
}

/// This node's copy of the limits, and where its changes go.
pub struct Limits {
    sign_in: AddressBudget,
    registration: AddressBudget,
    account: AccountDelay,
    /// The bus and this node, in cluster mode.
    shared_on: Option<(Weak<dyn Bus>, NodeId)>,
}

impl Limits {
    pub fn new(config: &ServerConfig, shared_on: Option<(Weak<dyn Bus>, NodeId)>) -> Limits {
        Limits {
            sign_in: AddressBudget::new(
                config.failed_sign_ins_per_ip,
                config.failed_sign_in_refill,
            ),
            registration: AddressBudget::new(
                config.registrations_per_ip,
                config.registration_refill,
            ),
            account: AccountDelay::new(config.account_free_failures, config.account_delay_cap),
            shared_on,
        }
    }

    fn budget(&self, budget: Budget) -> &AddressBudget {
        match budget {
            Budget::SignIn => &self.sign_in,
            Budget::Registration => &self.registration,
        }
    }

    fn share(&self, change: LimitChange) {
        if let Some((bus, node)) = &self.shared_on {
            if let Some(bus) = bus.upgrade() {
                bus.publish(Event::Limits {
                    node: *node,
                    change,
                });
            }
        }
    }

    /// Spend one try of `ip`'s `budget` if it has one; otherwise how long until it will.
    pub fn take_address(&self, budget: Budget, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        self.budget(budget).take(ip, now)?;
        self.share(LimitChange::AddressSpent { budget, ip });
        Ok(())
    }

    /// Spend one try even if none is left (a known device's wrong password).
    pub fn charge_address(&self, budget: Budget, ip: IpAddr, now: Instant) {
        self.budget(budget).charge(ip, now);
        self.share(LimitChange::AddressSpent { budget, ip });
    }

    /// Give back a try that turned out not to count.
    pub fn refund_address(&self, budget: Budget, ip: IpAddr, now: Instant) {
        self.budget(budget).refund(ip, now);
        self.share(LimitChange::AddressRefunded { budget, ip });
    }

    /// Count a failure for `user` now unless it must still wait (then how long).
    pub fn take_account(&self, user: UserId, now: Instant) -> Result<(), Duration> {
        self.account.take(user, now)?;
        self.share(LimitChange::AccountCharged { user });
        Ok(())
    }

    /// Count a failure for `user` without asking (a known device's wrong password).
    pub fn charge_account(&self, user: UserId, now: Instant) {
        self.account.charge(user, now);
        self.share(LimitChange::AccountCharged { user });
    }

    /// The attempt counted by [`Limits::take_account`] failed: its wait runs from `now`. (Not
    /// shared: the other nodes counted the failure when they heard of it, at about this time.)
    pub fn account_failed(&self, user: UserId, now: Instant) {
        self.account.failed(user, now);
    }

    /// Take back the failure counted for an attempt whose password was never checked.
    pub fn refund_account(&self, user: UserId) {
        self.account.refund(user);
        self.share(LimitChange::AccountRefunded { user });
    }

    /// The right password: the account starts afresh.
    pub fn account_succeeded(&self, user: UserId) {
        self.account.succeeded(user);
        self.share(LimitChange::AccountSucceeded { user });
    }

    /// Make a change another node made.
    pub(crate) fn apply(&self, change: LimitChange, now: Instant) {
        match change {
            LimitChange::AddressSpent { budget, ip } => self.budget(budget).charge(ip, now),
            LimitChange::AddressRefunded { budget, ip } => self.budget(budget).refund(ip, now),
            LimitChange::AccountCharged { user } => self.account.charge(user, now),
            LimitChange::AccountRefunded { user } => self.account.refund(user),
            LimitChange::AccountSucceeded { user } => self.account.succeeded(user),
        }
    }
}
