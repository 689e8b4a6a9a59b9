//! `/config` shows every route in one shape: a key a route does not set is
//! there as its default or `null`, so a reader (or `jq`) need not know which
//! routes set what.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::client::send;
use crate::support::gateway::Gateway;

/// The keys of each object in `list`.
fn key_sets(list: &[Value]) -> Vec<BTreeSet<String>> {
    list.iter()
        .map(|o| o.as_object().unwrap().keys().cloned().collect())
        .collect()
}

#[tokio::test]
async fn every_route_in_config_has_the_same_keys() {
    // A bare route, one with policies, an async one with a prefix, and one
    // verified with remote keys.
    let routes = "\
[[routes]]\nname = \"bare\"\npath = \"/bare\"\nupstream = \"http://127.0.0.1:9\"\n\
verify = { scheme = \"aryeo\", secrets = [\"s\"] }\n\n\
[[routes]]\nname = \"guarded\"\npath = \"/guarded\"\nupstream = \"http://127.0.0.1:9\"\n\
allow_ips = [\"127.0.0.1\"]\n\
[routes.rate_limit]\nper_second = 5\n[routes.dedup]\nttl_secs = 60\n\
[routes.verify]\nscheme = \"rye\"\nsecrets = [\"s\"]\n\n\
[[routes]]\nname = \"queued\"\npath_prefix = \"/queued/\"\nupstream = \"http://127.0.0.1:9\"\n\
delivery = \"async\"\n[routes.verify]\nscheme = \"stripe\"\nsecrets = [\"s\"]\n\n\
[[routes]]\nname = \"sns\"\npath = \"/sns\"\nupstream = \"http://127.0.0.1:9\"\n\
[routes.verify]\nscheme = \"aws-sns\"\n";
    let gw = Gateway::with_admin(routes, "").await;
    let config = send(gw.admin(), "GET", "/config", &[], "").await.json();
    let routes = config["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 4);
    let keys = key_sets(routes);
    for (route, set) in routes.iter().zip(&keys) {
        assert_eq!(
            set, &keys[0],
            "{} differs from {}",
            route["name"], routes[0]["name"]
        );
    }
    let verifiers: Vec<Value> = routes
        .iter()
        .flat_map(|r| r["verify"].as_array().unwrap().clone())
        .collect();
    let verify_keys = key_sets(&verifiers);
    assert!(
        verify_keys.iter().all(|k| *k == verify_keys[0]),
        "{verify_keys:?}"
    );

    // What a route does not set shows as its default or null.
    let bare = &routes[0];
    assert_eq!(bare["mode"], "enforce");
    assert_eq!(bare["on_state_error"], "closed");
    assert_eq!(bare["allow_ips"], serde_json::json!([]));
    for unset in [
        "rate_limit",
        "dedup",
        "forward_signature",
        "retry",
        "path_prefix",
    ] {
        assert_eq!(bare[unset], Value::Null, "{unset}");
    }
    assert_eq!(bare["verify"][0]["remote_keys"], Value::Null);
    assert_eq!(routes[1]["dedup"]["ttl_secs"], 60);
    assert_eq!(routes[2]["path"], Value::Null);
    assert_eq!(routes[2]["path_prefix"], "/queued/");
    assert_eq!(routes[2]["retry"]["max_attempts"], 12);
    assert!(routes[3]["verify"][0]["remote_keys"].is_object());
}
