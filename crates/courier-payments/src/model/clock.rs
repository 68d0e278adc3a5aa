//! Time as the ledger sees it: the shared clock, so hold expiry is tested by moving a manual clock.

pub use courier_kit::clock::Clock;
