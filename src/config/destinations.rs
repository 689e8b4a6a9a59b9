//! A route's `upstream` or `[[routes.destinations]]`, checked and built: the
//! destination's upstream, name and filter. Every value a filter reads must
//! be one the route's signature covers: the signed event type, a JSON field
//! of a signed body, a signed header.

use std::ops::Range;
use std::time::Duration;

use http::HeaderName;
use serde_json::Value;
use toml::Spanned;

use super::build::{Builder, is_name, span};
use super::file::{BreakerSection, ConditionSection, DestinationSection, RouteSection};
use crate::base::settings::BreakerSettings;
use crate::destinations::{Condition, Field, Filter, Glob, Test};
use crate::forward::Upstream;
use crate::json::JsonPointer;
use crate::scheme::source::Source;
use crate::verify::Verifier;

/// A breaker's defaults: consecutive failed attempts, and seconds open.
const DEFAULT_BREAKER_FAILURES: u64 = 5;
const DEFAULT_BREAKER_COOLDOWN_SECS: u64 = 30;
/// Values an `in` list may hold at most.
const MAX_IN: usize = 1_000;

/// A route's one destination, built.
pub(super) struct Built {
    /// Its name: the route's for the short form.
    pub(super) name: String,
    /// Where it delivers.
    pub(super) upstream: Upstream,
    /// Which events it wants; `None`: every one.
    pub(super) filter: Option<Box<Filter>>,
    /// Its `delivery`, when it sets one.
    pub(super) delivery: Option<Spanned<String>>,
    /// Its circuit breaker, and where it is written.
    pub(super) breaker: Option<(BreakerSettings, Option<Range<usize>>)>,
}

impl Builder<'_> {
    /// The route's destination: `upstream`, or its one `[[routes.destinations]]`.
    pub(super) fn destination(
        &mut self,
        r: &RouteSection,
        verifiers: &[Verifier],
        timeout: Duration,
    ) -> Option<Built> {
        let route = r.name.get_ref();
        let ca_file = r.upstream_ca_file.as_ref();
        let (first, more) = match (&r.upstream, r.destinations.split_first()) {
            (Some(upstream), None) => {
                return Some(Built {
                    name: route.clone(),
                    upstream: self.upstream(upstream, ca_file, timeout)?,
                    filter: None,
                    delivery: None,
                    breaker: None,
                });
            }
            (Some(_), Some((first, _))) => {
                self.error(
                    span(first),
                    format!(
                        "route `{route}` has both `upstream` and `[[routes.destinations]]`; \
                         `upstream` is the short form of one destination: keep one of the two"
                    ),
                );
                return None;
            }
            (None, None) => {
                self.error(
                    span(&r.name),
                    format!("route `{route}` needs `upstream` or `[[routes.destinations]]`"),
                );
                return None;
            }
            (None, Some(split)) => split,
        };
        if let Some(second) = more.first() {
            self.error(
                span(second),
                format!(
                    "route `{route}` has {} destinations; delivering one event to several \
                     (fan-out) is not supported yet: give the route one destination",
                    r.destinations.len()
                ),
            );
            return None;
        }
        let d: &DestinationSection = first.get_ref();
        let name = d.name.get_ref();
        if !is_name(name) {
            self.error(
                span(&d.name),
                format!("destination name `{name}` must match [a-z0-9_-]+"),
            );
        }
        if let (Some(mine), Some(routes)) = (&d.delivery, &r.delivery)
            && mine.get_ref() != routes.get_ref()
        {
            self.error(
                span(mine),
                format!(
                    "destination `{name}` has `delivery = \"{}\"` and route `{route}` \
                     `delivery = \"{}\"`: set it in one place",
                    mine.get_ref(),
                    routes.get_ref()
                ),
            );
        }
        let events = d
            .events
            .as_ref()
            .map(|e| self.events(e, verifiers))
            .unwrap_or_default();
        let when = d
            .when
            .as_ref()
            .map(|w| {
                w.get_ref()
                    .iter()
                    .filter_map(|c| self.condition(c, verifiers))
                    .collect()
            })
            .unwrap_or_default();
        let filter = Filter { events, when };
        let breaker = d
            .breaker
            .as_ref()
            .map(|b| (self.breaker(b.get_ref()), span(b)));
        Some(Built {
            name: name.clone(),
            upstream: self.upstream(&d.upstream, ca_file, timeout)?,
            filter: (filter != Filter::default()).then(|| Box::new(filter)),
            delivery: d.delivery.clone(),
            breaker,
        })
    }

    /// `[routes.destinations.breaker]`.
    fn breaker(&mut self, b: &BreakerSection) -> BreakerSettings {
        let failures = self.positive_or(&b.failures, "failures", DEFAULT_BREAKER_FAILURES);
        let cooldown = self.positive_or(
            &b.cooldown_secs,
            "cooldown_secs",
            DEFAULT_BREAKER_COOLDOWN_SECS,
        );
        BreakerSettings {
            failures: u32::try_from(failures).unwrap_or(u32::MAX),
            cooldown: Duration::from_secs(cooldown),
        }
    }

    /// `events`: globs on the event type, which every verifier's scheme must sign.
    fn events(
        &mut self,
        events: &Spanned<Vec<Spanned<String>>>,
        verifiers: &[Verifier],
    ) -> Vec<Glob> {
        if events.get_ref().is_empty() {
            self.error(
                span(events),
                "`events` lists no pattern; leave it out to take every event",
            );
        }
        for verifier in verifiers {
            let scheme = verifier.scheme();
            if scheme.types.signed.is_empty() {
                let why = if scheme.event_type.is_empty() {
                    "yields no event type"
                } else {
                    "reads an event type its signature does not cover, which anyone could change"
                };
                self.error(
                    span(events),
                    format!(
                        "`events` filters on the signed event type, and scheme `{}` {why}",
                        scheme.name
                    ),
                );
            }
        }
        let mut globs = Vec::new();
        for pattern in events.get_ref() {
            if pattern.get_ref().is_empty() {
                self.error(span(pattern), "an `events` pattern is empty");
            } else {
                globs.push(Glob::new(pattern.get_ref()));
            }
        }
        globs
    }

    /// One `when` condition: one field (`json` or `header`) the signature of
    /// every verifier covers, one test (`equals` or `in`).
    fn condition(
        &mut self,
        c: &Spanned<ConditionSection>,
        verifiers: &[Verifier],
    ) -> Option<Condition> {
        let at = span(c);
        let s = c.get_ref();
        let (field, source) = match (&s.json, &s.header) {
            (Some(pointer), None) => {
                let parsed = match JsonPointer::parse(pointer.get_ref()) {
                    Ok(p) if !p.as_str().is_empty() => p,
                    Ok(_) => {
                        self.error(span(pointer), "`json` names the whole body; name a field");
                        return None;
                    }
                    Err(e) => {
                        self.error(span(pointer), e);
                        return None;
                    }
                };
                let source = Source::Json(parsed.clone());
                (Field::Json(parsed), (source, span(pointer)))
            }
            (None, Some(header)) => {
                let Ok(name) = HeaderName::from_bytes(header.get_ref().as_bytes()) else {
                    self.error(
                        span(header),
                        format!("`{}` is not a header name", header.get_ref()),
                    );
                    return None;
                };
                let source = Source::Header(name.clone());
                (Field::Header(name), (source, span(header)))
            }
            _ => {
                self.error(at, "a `when` condition names one field: `json` or `header`");
                return None;
            }
        };
        for verifier in verifiers {
            let scheme = verifier.scheme();
            if !scheme.covers(&source.0) {
                let what = match &field {
                    Field::Json(p) => format!("body field `{}`", p.as_str()),
                    Field::Header(h) => format!("header `{h}`"),
                };
                self.error(
                    source.1.clone(),
                    format!(
                        "scheme `{}` does not sign the {what}: anyone could change it, so it \
                         cannot choose where an event goes",
                        scheme.name
                    ),
                );
            }
        }
        let header = matches!(field, Field::Header(_));
        let test = match (&s.equals, &s.one_of) {
            (Some(value), None) => {
                Test::Equals(self.value(value.get_ref(), header, span(value))?)
            }
            (None, Some(values)) => {
                if values.get_ref().is_empty() || values.get_ref().len() > MAX_IN {
                    self.error(span(values), format!("`in` lists 1 to {MAX_IN} values"));
                    return None;
                }
                let mut out = Vec::new();
                for v in values.get_ref() {
                    out.push(self.value(v, header, span(values))?);
                }
                Test::In(out)
            }
            _ => {
                self.error(at, "a `when` condition has one test: `equals` or `in`");
                return None;
            }
        };
        Some(Condition { field, test })
    }

    /// A TOML value as JSON; a header's must be a string.
    fn value(
        &mut self,
        value: &toml::Value,
        header: bool,
        at: Option<Range<usize>>,
    ) -> Option<Value> {
        if header && !value.is_str() {
            self.error(at, "a header's value is text: write it in quotes");
            return None;
        }
        if has_datetime(value) {
            self.error(at, "JSON has no dates: write the date as a string");
            return None;
        }
        match serde_json::to_value(value) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(at, format!("cannot compare with this value: {e}"));
                None
            }
        }
    }
}

/// Whether a TOML value holds a date or time anywhere.
fn has_datetime(value: &toml::Value) -> bool {
    match value {
        toml::Value::Datetime(_) => true,
        toml::Value::Array(a) => a.iter().any(has_datetime),
        toml::Value::Table(t) => t.values().any(has_datetime),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use crate::config::load_str;
    use crate::config::tests::errors;
    use crate::destinations::{Field, Test};

    /// A route verifying `verify`, with `rest` after its name and path.
    fn route(verify: &str, rest: &str) -> String {
        format!("[[routes]]\nname = \"a\"\npath = \"/a\"\nverify = {{ {verify} }}\n{rest}")
    }

    const RYE: &str = "scheme = \"rye\", secrets = [\"k\"]";

    fn destination(lines: &str) -> String {
        format!(
            "[[routes.destinations]]\nname = \"billing\"\nupstream = \"http://127.0.0.1:9\"\n{lines}"
        )
    }

    #[test]
    fn upstream_is_the_short_form_of_one_destination() {
        let short = route(RYE, "upstream = \"http://127.0.0.1:9/x\"\n");
        let config = load_str(Path::new("c.toml"), &short).unwrap().config;
        let r = config.routes.iter().next().unwrap();
        assert_eq!(r.destination, "a");
        assert!(r.filter.is_none());
        let long = route(
            RYE,
            &destination(
                "events = [\"invoice.*\"]\nwhen = [ { json = \"/livemode\", equals = true }, \
                 { json = \"/amount\", in = [1, 2.5] } ]\n",
            ),
        );
        let config = load_str(Path::new("c.toml"), &long).unwrap().config;
        let r = config.routes.iter().next().unwrap();
        assert_eq!(r.destination, "billing");
        assert_eq!(&*r.upstream.url, "http://127.0.0.1:9");
        let filter = r.filter.as_deref().unwrap();
        assert_eq!(filter.events[0].as_str(), "invoice.*");
        assert!(matches!(&filter.when[0].field, Field::Json(p) if p.as_str() == "/livemode"));
        assert_eq!(filter.when[0].test, Test::Equals(json!(true)));
        assert_eq!(filter.when[1].test, Test::In(vec![json!(1), json!(2.5)]));
    }

    #[test]
    fn a_route_has_upstream_or_destinations_and_one_of_them() {
        let both = route(
            RYE,
            &format!("upstream = \"http://127.0.0.1:9\"\n{}", destination("")),
        );
        assert_eq!(
            errors(&both),
            [
                "c.toml:6:1: route `a` has both `upstream` and `[[routes.destinations]]`; \
              `upstream` is the short form of one destination: keep one of the two"
            ]
        );
        assert_eq!(
            errors(&route(RYE, "")),
            ["c.toml:2:8: route `a` needs `upstream` or `[[routes.destinations]]`"]
        );
        let two = route(RYE, &format!("{}{}", destination(""), destination("")));
        let found = errors(&two);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with(
                "c.toml:8:1: route `a` has 2 destinations; delivering one \
                 event to several (fan-out) is not supported yet"
            ),
            "{found:?}"
        );
    }

    #[test]
    fn filters_read_only_what_the_signature_covers() {
        let events_on = |scheme: &str, why: &str| {
            let text = route(
                &format!("scheme = \"{scheme}\", secrets = [\"k\"]"),
                &destination("events = [\"x\"]\n"),
            );
            let expected = format!(
                "c.toml:8:10: `events` filters on the signed event type, and scheme `{scheme}` {why}"
            );
            assert_eq!(errors(&text), [expected]);
        };
        events_on("aryeo", "yields no event type");
        events_on(
            "github",
            "reads an event type its signature does not cover, which anyone could change",
        );
        let header = route(
            RYE,
            &destination("when = [ { header = \"x-shop\", equals = \"a\" } ]\n"),
        );
        assert_eq!(
            errors(&header),
            [
                "c.toml:8:21: scheme `rye` does not sign the header `x-shop`: anyone could \
              change it, so it cannot choose where an event goes"
            ]
        );
        // A scheme that signs the header may filter on it.
        let signed = route(
            "scheme = \"hmac\", header = \"x-sig\", payload = \"{header:x-shop}.{body}\", \
             secrets = [\"k\"]",
            &destination("when = [ { header = \"x-shop\", in = [\"a\", \"b\"] } ]\n"),
        );
        assert!(load_str(Path::new("c.toml"), &signed).is_ok());
    }

    #[test]
    fn conditions_name_one_field_and_one_test() {
        let cases = [
            (
                "when = [ { json = \"/a\", header = \"x\", equals = 1 } ]",
                "c.toml:8:10: a `when` condition names one field: `json` or `header`",
            ),
            (
                "when = [ { json = \"/a\" } ]",
                "c.toml:8:10: a `when` condition has one test: `equals` or `in`",
            ),
            (
                "when = [ { json = \"/a\", equals = 1, in = [1] } ]",
                "c.toml:8:10: a `when` condition has one test: `equals` or `in`",
            ),
            (
                "when = [ { json = \"a\", equals = 1 } ]",
                "c.toml:8:19: JSON pointer `a` must start with `/`",
            ),
            (
                "when = [ { json = \"/a\", in = [] } ]",
                "c.toml:8:30: `in` lists 1 to 1000 values",
            ),
            (
                "when = [ { json = \"/a\", equals = 1979-05-27 } ]",
                "c.toml:8:34: JSON has no dates: write the date as a string",
            ),
            (
                "events = []",
                "c.toml:8:10: `events` lists no pattern; leave it out to take every event",
            ),
            (
                "delivery = \"async\"\n[routes.destinations.retry]",
                "c.toml:9:22: unknown field `retry`, expected one of `name`, `upstream`, \
                 `events`, `when`, `delivery`, `breaker`",
            ),
        ];
        for (lines, expected) in cases {
            let text = route(RYE, &destination(&format!("{lines}\n")));
            assert_eq!(errors(&text), [expected], "{lines}");
        }
        let header = route(
            "scheme = \"hmac\", header = \"x-sig\", payload = \"{header:x-shop}.{body}\", \
             secrets = [\"k\"]",
            &destination("when = [ { header = \"x-shop\", equals = 1 } ]\n"),
        );
        assert_eq!(
            errors(&header),
            ["c.toml:8:40: a header's value is text: write it in quotes"]
        );
    }

    #[test]
    fn a_destination_is_named_and_sets_delivery_in_one_place() {
        let bad = route(RYE, &destination("").replace("\"billing\"", "\"Billing\""));
        assert_eq!(
            errors(&bad),
            ["c.toml:6:8: destination name `Billing` must match [a-z0-9_-]+"]
        );
        let clash = route(
            RYE,
            &format!(
                "delivery = \"sync\"\n{}",
                destination("delivery = \"async\"\n")
            ),
        );
        assert_eq!(
            errors(&clash),
            [
                "c.toml:9:12: destination `billing` has `delivery = \"async\"` and route `a` \
              `delivery = \"sync\"`: set it in one place"
            ]
        );
        let mine = route(RYE, &destination("delivery = \"async\"\n"));
        let config = load_str(Path::new("c.toml"), &mine).unwrap().config;
        assert!(config.routes.iter().next().unwrap().delivery.is_some());
    }

    #[test]
    fn a_breaker_rests_an_async_destination() {
        let sync = route(RYE, &destination("[routes.destinations.breaker]\n"));
        assert_eq!(
            errors(&sync),
            [
                "c.toml:8:1: `[routes.destinations.breaker]` rests an async destination: it \
              needs `delivery = \"async\"`"
            ]
        );
        let text = route(
            RYE,
            &destination("delivery = \"async\"\n[routes.destinations.breaker]\nfailures = 2\n"),
        );
        let config = load_str(Path::new("c.toml"), &text).unwrap().config;
        let policy = config
            .routes
            .iter()
            .next()
            .unwrap()
            .delivery
            .clone()
            .unwrap();
        let breaker = policy.breaker.unwrap();
        assert_eq!(breaker.failures, 2);
        assert_eq!(
            breaker.cooldown,
            std::time::Duration::from_secs(30),
            "the default"
        );
        let zero = route(
            RYE,
            &destination(
                "delivery = \"async\"\n[routes.destinations.breaker]\ncooldown_secs = 0\n",
            ),
        );
        assert_eq!(
            errors(&zero),
            ["c.toml:10:17: `cooldown_secs` must be a positive integer"]
        );
    }
}
