//! Destinations: where a route's verified events go, which of them each one
//! wants ([`Filter`]: globs on the signed event type, conditions on the
//! signed body and headers), and when it is given a rest ([`Breaker`]).
//! Pure: no pingora, no I/O.

mod breaker;
mod filter;

pub use breaker::{Allowance, Breaker, Change};
pub use filter::{Condition, Event, Field, Filter, Glob, Test};
