//! Time as risk sees it: the shared clock, so velocity windows are tested by moving a manual clock, never by waiting.

pub use courier_kit::clock::Clock;
