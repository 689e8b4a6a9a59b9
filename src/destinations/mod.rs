//! Destinations: where a route's verified events go, and which of them each
//! one wants ([`Filter`]: globs on the signed event type, conditions on the
//! signed body and headers). Pure: no pingora, no I/O.

mod filter;

pub use filter::{Condition, Event, Field, Filter, Glob, Test};
