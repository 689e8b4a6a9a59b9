//! Route matching: host first, exact before prefix, longest prefix, segment
//! boundaries, method handling, and path hygiene.

use std::path::Path;

use http::Method;

use super::{Match, has_dot_segment};
use crate::config::load_str;
use crate::runtime::RuntimeConfig;

fn route(name: &str, rule: &str, extra: &str) -> String {
    format!(
        "[[routes]]\nname = \"{name}\"\n{rule}\n{extra}\nupstream = \"http://127.0.0.1:9\"\n[routes.verify]\nscheme = \"aryeo\"\nsecrets = [\"s\"]\n"
    )
}

fn table(routes: &[String]) -> RuntimeConfig {
    load_str(Path::new("t.toml"), &routes.concat())
        .unwrap_or_else(|r| panic!("{r}"))
        .config
}

fn find(c: &RuntimeConfig, host: Option<&str>, path: &str, method: &Method) -> String {
    match c.routes.find(host, path, method) {
        Match::Found { route, remainder } => format!("{}+{remainder}", route.name),
        Match::NoRoute => "404".to_owned(),
        Match::MethodNotAllowed(m) => format!("405 {m:?}"),
    }
}

#[test]
fn exact_beats_prefix_and_longest_prefix_wins() {
    let c = table(&[
        route("short", "path_prefix = \"/hooks\"", ""),
        route("long", "path_prefix = \"/hooks/stripe/\"", ""),
        route("exact", "path = \"/hooks/stripe/x\"", ""),
    ]);
    assert_eq!(find(&c, None, "/hooks/stripe/x", &Method::POST), "exact+");
    assert_eq!(find(&c, None, "/hooks/stripe/y", &Method::POST), "long+y");
    assert_eq!(
        find(&c, None, "/hooks/other", &Method::POST),
        "short+/other"
    );
    assert_eq!(find(&c, None, "/hooks", &Method::POST), "short+");
    assert_eq!(
        find(&c, None, "/hooksfoo", &Method::POST),
        "404",
        "prefixes match whole segments"
    );
    assert_eq!(find(&c, None, "/nothing", &Method::POST), "404");
}

#[test]
fn host_routes_come_first_and_ignore_port_and_case() {
    let c = table(&[
        route("any", "path_prefix = \"/\"", ""),
        route("hosted", "path = \"/a\"", "host = \"Hooks.Example.com\""),
    ]);
    assert_eq!(
        find(&c, Some("hooks.example.com"), "/a", &Method::POST),
        "hosted+"
    );
    assert_eq!(
        find(&c, Some("HOOKS.example.com:8080"), "/a", &Method::POST),
        "hosted+"
    );
    assert_eq!(
        find(&c, Some("other.example.com"), "/a", &Method::POST),
        "any+a"
    );
    assert_eq!(find(&c, None, "/a", &Method::POST), "any+a");
    assert_eq!(
        find(&c, Some("hooks.example.com"), "/b", &Method::POST),
        "any+b"
    );
}

#[test]
fn methods_select_within_a_path_or_give_405() {
    let c = table(&[
        route("post", "path = \"/a\"", ""),
        route("get", "path = \"/a\"", "methods = [\"GET\", \"PUT\"]"),
    ]);
    assert_eq!(find(&c, None, "/a", &Method::POST), "post+");
    assert_eq!(find(&c, None, "/a", &Method::GET), "get+");
    assert_eq!(
        find(&c, None, "/a", &Method::DELETE),
        "405 [POST, GET, PUT]"
    );
}

#[test]
fn upstream_path_rewrite_keeps_remainder_and_query() {
    let c = table(&[
        route("exact", "path = \"/in\"", "").replace("127.0.0.1:9", "127.0.0.1:9/internal/rye"),
        route("prefix", "path_prefix = \"/p/\"", "").replace("127.0.0.1:9", "127.0.0.1:9/up/?k=v"),
        route("keep", "path_prefix = \"/keep/\"", ""),
    ]);
    let get = |name: &str| c.routes.iter().find(|r| r.name == name).unwrap().clone();
    assert_eq!(
        get("exact").upstream_path_and_query("/in", "", Some("a=1")),
        "/internal/rye?a=1"
    );
    assert_eq!(
        get("prefix").upstream_path_and_query("/p/x/y", "x/y", None),
        "/up/x/y?k=v"
    );
    assert_eq!(
        get("prefix").upstream_path_and_query("/p/x", "x", Some("a=1")),
        "/up/x?k=v&a=1"
    );
    assert_eq!(
        get("keep").upstream_path_and_query("/keep/z", "z", None),
        "/keep/z"
    );
}

#[test]
fn dot_segments_are_detected_also_encoded() {
    for bad in [
        "/a/../b",
        "/a/./b",
        "/..",
        "/a/%2e%2E/b",
        "/a/.%2e",
        "/a/%2E",
    ] {
        assert!(has_dot_segment(bad), "{bad}");
    }
    for good in ["/a/b", "/a/.well-known", "/a/..b", "/"] {
        assert!(!has_dot_segment(good), "{good}");
    }
}
