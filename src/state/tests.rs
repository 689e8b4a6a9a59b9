//! The in-memory store: claim, settle, expiry, the bound; local rate limits.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::{Claim, DedupKey, Rate, State};
use crate::base::settings::StateSettings;
use crate::observe::metrics::Metrics;
use crate::policy::{LimitBy, RateLimit};

const HOLD: Duration = Duration::from_secs(30);

fn memory(max_entries: usize) -> (State, Metrics) {
    let metrics = Metrics::new();
    let settings = StateSettings {
        redis: None,
        timeout: Duration::from_millis(250),
        max_entries,
    };
    (State::new(&settings, metrics.clone()).unwrap(), metrics)
}

fn key(id: &str) -> DedupKey {
    DedupKey::new("route", id)
}

async fn claim(state: &State, id: &str) -> Claim {
    state.claim(key(id), HOLD).await.unwrap()
}

#[tokio::test]
async fn a_claim_holds_until_settled_and_delivered_answers_duplicate() {
    let (state, _) = memory(10);
    let Claim::Claimed(hold) = claim(&state, "evt_1").await else {
        panic!("first claim");
    };
    match claim(&state, "evt_1").await {
        Claim::InFlight { retry_after } => assert!((1..=30).contains(&retry_after)),
        other => panic!("in flight expected, got {other:?}"),
    }
    hold.delivered(Duration::from_secs(60)).await.unwrap();
    assert!(matches!(claim(&state, "evt_1").await, Claim::Delivered));
    assert!(matches!(claim(&state, "evt_2").await, Claim::Claimed(_)));
}

#[tokio::test]
async fn a_stored_claim_answers_duplicate_until_its_delivery_settles_it() {
    let (state, _) = memory(10);
    let Claim::Claimed(hold) = claim(&state, "evt_1").await else {
        panic!("first claim");
    };
    let (k, token) = (hold.key().clone(), hold.token());
    hold.stored().await.unwrap();
    assert!(matches!(claim(&state, "evt_1").await, Claim::Delivered));
    // Another claim's token gives nothing back; the delivery's does.
    state.release_claim(&k, token ^ 1).await.unwrap();
    assert!(matches!(claim(&state, "evt_1").await, Claim::Delivered));
    state.release_claim(&k, token).await.unwrap();
    assert!(matches!(claim(&state, "evt_1").await, Claim::Claimed(_)));
}

#[tokio::test]
async fn a_released_or_dropped_claim_lets_the_retry_through() {
    let (state, _) = memory(10);
    let Claim::Claimed(hold) = claim(&state, "evt_1").await else {
        panic!("first claim");
    };
    hold.release().await.unwrap();
    let Claim::Claimed(hold) = claim(&state, "evt_1").await else {
        panic!("claim after release");
    };
    drop(hold);
    assert!(matches!(claim(&state, "evt_1").await, Claim::Claimed(_)));
}

#[tokio::test]
async fn a_stale_release_leaves_the_new_claim_alone() {
    let (state, _) = memory(10);
    let Claim::Claimed(first) = state.claim(key("e"), Duration::ZERO).await.unwrap() else {
        panic!("first claim");
    };
    // The first hold lapsed at once: a second claim takes the key.
    let Claim::Claimed(_second) = claim(&state, "e").await else {
        panic!("second claim");
    };
    first.release().await.unwrap();
    assert!(matches!(claim(&state, "e").await, Claim::InFlight { .. }));
}

#[tokio::test]
async fn delivered_keys_expire() {
    let (state, _) = memory(10);
    let Claim::Claimed(hold) = claim(&state, "e").await else {
        panic!("first claim");
    };
    hold.delivered(Duration::from_millis(20)).await.unwrap();
    assert!(matches!(claim(&state, "e").await, Claim::Delivered));
    tokio::time::sleep(Duration::from_millis(40)).await;
    assert!(matches!(claim(&state, "e").await, Claim::Claimed(_)));
}

#[tokio::test]
async fn the_bound_evicts_the_least_recently_used_and_counts_it() {
    let (state, metrics) = memory(2);
    for id in ["a", "b", "c"] {
        let Claim::Claimed(hold) = claim(&state, id).await else {
            panic!("claim {id}");
        };
        hold.delivered(Duration::from_secs(60)).await.unwrap();
    }
    assert_eq!(state.0.memory.len(), 2);
    assert!(matches!(claim(&state, "c").await, Claim::Delivered));
    // `a` was evicted: it goes through again.
    assert!(matches!(claim(&state, "a").await, Claim::Claimed(_)));
    let text = String::from_utf8(metrics.render().1).unwrap();
    assert!(text.contains("hookgate_state_evictions_total 2"), "{text}");
}

#[tokio::test]
async fn a_sharded_cache_holds_its_bound() {
    let (state, metrics) = memory(10_000);
    for i in 0..20_000 {
        let Claim::Claimed(hold) = claim(&state, &format!("evt_{i}")).await else {
            panic!("claim {i}");
        };
        hold.delivered(Duration::from_secs(60)).await.unwrap();
    }
    assert_eq!(state.0.memory.len(), 10_000);
    assert!(matches!(claim(&state, "evt_19999").await, Claim::Delivered));
    let text = String::from_utf8(metrics.render().1).unwrap();
    assert!(
        text.contains("hookgate_state_evictions_total 10000"),
        "{text}"
    );
}

#[test]
fn keys_are_namespaced_by_route_and_long_ids_hashed() {
    assert_eq!(DedupKey::new("r", "e").as_str(), "hookgate:dedup:r:e");
    assert_ne!(DedupKey::new("r", "e"), DedupKey::new("s", "e"));
    let long = DedupKey::new("r", &"x".repeat(10_000));
    assert!(long.as_str().len() < 100, "{}", long.as_str());
}

#[test]
fn local_rate_limits_hold_a_burst_then_ask_to_wait() {
    let (state, _) = memory(10);
    let limit = RateLimit {
        per_second: 1.0,
        burst: 3,
        by: LimitBy::Route,
    };
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    for _ in 0..3 {
        assert_eq!(state.check_local_rate("r", &limit, ip), Rate::Allowed);
    }
    assert_eq!(
        state.check_local_rate("r", &limit, ip),
        Rate::Limited { retry_after: 1 }
    );
    // Another route has its own limit.
    assert_eq!(state.check_local_rate("s", &limit, ip), Rate::Allowed);
}

#[test]
fn per_client_limits_count_each_address() {
    let (state, _) = memory(10);
    let limit = RateLimit {
        per_second: 0.5,
        burst: 1,
        by: LimitBy::ClientIp,
    };
    let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(state.check_local_rate("r", &limit, a), Rate::Allowed);
    assert_eq!(
        state.check_local_rate("r", &limit, a),
        Rate::Limited { retry_after: 2 }
    );
    assert_eq!(state.check_local_rate("r", &limit, b), Rate::Allowed);
}

#[test]
fn ipv6_clients_are_limited_by_their_64() {
    let (state, _) = memory(10);
    let limit = RateLimit {
        per_second: 0.5,
        burst: 1,
        by: LimitBy::ClientIp,
    };
    let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
    let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
    let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(state.check_local_rate("r", &limit, a), Rate::Allowed);
    assert!(matches!(
        state.check_local_rate("r", &limit, same_64),
        Rate::Limited { .. }
    ));
    assert_eq!(state.check_local_rate("r", &limit, other_64), Rate::Allowed);
}

#[test]
fn a_route_forgotten_after_a_reload_starts_afresh() {
    let (state, _) = memory(10);
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let limit = RateLimit {
        per_second: 0.1,
        burst: 1,
        by: LimitBy::Route,
    };
    for route in ["kept", "gone"] {
        assert_eq!(state.check_local_rate(route, &limit, ip), Rate::Allowed);
    }
    state.retain_limits(|route| route == "kept");
    assert!(matches!(
        state.check_local_rate("kept", &limit, ip),
        Rate::Limited { .. }
    ));
    assert_eq!(state.check_local_rate("gone", &limit, ip), Rate::Allowed);
}

#[test]
fn a_changed_limit_is_rebuilt() {
    let (state, _) = memory(10);
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let tight = RateLimit {
        per_second: 1.0,
        burst: 1,
        by: LimitBy::Route,
    };
    assert_eq!(state.check_local_rate("r", &tight, ip), Rate::Allowed);
    assert!(matches!(
        state.check_local_rate("r", &tight, ip),
        Rate::Limited { .. }
    ));
    let loose = RateLimit { burst: 5, ..tight };
    assert_eq!(state.check_local_rate("r", &loose, ip), Rate::Allowed);
}
