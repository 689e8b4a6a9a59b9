//! Route matching: host first, exact before prefix, longest prefix, segment
//! boundaries, method handling, and path hygiene; every rule again among
//! 100,000 routes, and the index against the rules' plain definition.

use std::cmp::Reverse;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::Method;

use super::{Match, RouteTable, has_dot_segment, strip_port};
use crate::config::load_str;
use crate::forward::Upstream;
use crate::routes::{PathMatch, Route};
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

/// The outcome of a lookup: `NAME+REMAINDER`, `404` or `405 [METHODS]`.
fn lookup(t: &RouteTable, host: Option<&str>, path: &str, method: &Method) -> String {
    match t.find(host, path, method) {
        Match::Found { route, remainder } => format!("{}+{remainder}", route.name),
        Match::NoRoute => "404".to_owned(),
        Match::MethodNotAllowed(m) => format!("405 {m:?}"),
    }
}

fn find(c: &RuntimeConfig, host: Option<&str>, path: &str, method: &Method) -> String {
    lookup(&c.routes, host, path, method)
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
        "/a/..%2fb",
        "/a/..%2Fb",
        "/a/%2e%2e%5Cb",
        "/a/..%5cb",
        "/a/..\\b",
        "/a\\.\\b",
        "/a/b%2f..",
        "/a/b%2F.",
        "..",
    ] {
        assert!(has_dot_segment(bad), "{bad}");
    }
    for good in [
        "/a/b",
        "/a/.well-known",
        "/a/..b",
        "/",
        "/a/...",
        "/a/%2e%2e%2e",
        "/a/%2",
        "/a/%2f",
        "/a/%252e",
        "/a%2Fb",
        "/a\\b",
        "/a/.%2",
    ] {
        assert!(!has_dot_segment(good), "{good}");
    }
}

// === A table built without a config file ===

/// A route as validation builds it: `host` lower case, nothing to verify.
fn built(name: &str, host: Option<&str>, path: PathMatch, methods: &[Method]) -> Route {
    let addr = SocketAddr::from(([127, 0, 0, 1], 9));
    Route {
        name: name.to_owned(),
        host: host.map(str::to_ascii_lowercase),
        path,
        methods: methods.into(),
        upstream: Upstream {
            peer: crate::forward::peer(addr, false, "", Duration::from_secs(1), None),
            pool_key: 0,
            addr,
            tls: false,
            authority: addr.to_string().into(),
            path: None,
            query: None,
            url: format!("http://{addr}").into(),
        },
        destination: name.to_owned(),
        filter: None,
        max_body_bytes: 1,
        read_timeout: Duration::from_secs(1),
        upstream_timeout: Duration::from_secs(1),
        verifiers: Vec::new(),
        strip_headers: Vec::new(),
        public_url: None,
        verify_token: None,
        handshakes: Vec::new(),
        json_members: Vec::new().into(),
        secret_sources: Vec::new().into(),
        policy: None,
        delivery: None,
        fingerprint: [0; 32],
    }
}

fn exact(path: &str) -> PathMatch {
    PathMatch::Exact(path.to_owned())
}

fn prefix(path: &str) -> PathMatch {
    PathMatch::Prefix(path.to_owned())
}

/// One route for each matching rule of docs/config.md.
fn cast() -> Vec<Route> {
    let post = [Method::POST];
    vec![
        built("short", None, prefix("/hooks"), &post),
        built("long", None, prefix("/hooks/stripe/"), &post),
        built("exact", None, exact("/hooks/stripe/x"), &post),
        built("site", None, prefix("/site"), &post),
        built("site-exact", None, exact("/site/p/x"), &post),
        built("hosted", Some("Hooks.Example.com"), exact("/site/a"), &post),
        built(
            "hosted-prefix",
            Some("hooks.example.com"),
            prefix("/site/p/"),
            &post,
        ),
        built(
            "with-port",
            Some("hooks.example.com:8443"),
            exact("/site/b"),
            &post,
        ),
        built("v6", Some("[::1]"), exact("/site/c"), &post),
        built("tie-port", Some("t.example:8080"), exact("/tie"), &post),
        built("tie-bare", Some("t.example"), exact("/tie"), &post),
        built("bare-first", Some("t.example"), exact("/tie2"), &post),
        built("port-second", Some("t.example:8080"), exact("/tie2"), &post),
        built("m-post", None, exact("/m"), &post),
        built("m-get", None, exact("/m"), &[Method::GET, Method::PUT]),
        built("get-only", None, prefix("/get/"), &[Method::GET]),
    ]
}

/// Every matching rule, as `METHOD [HOST] PATH => outcome  # rule`, for a table
/// holding [`cast`].
const RULES: &str = "
    POST /hooks/stripe/x                => exact+                # exact beats prefix
    POST /hooks/stripe/y                => long+y                # the longest prefix wins
    POST /hooks/stripe/x/y              => long+x/y              # an exact path is whole
    POST /hooks/other                   => short+/other          # a shorter prefix
    POST /hooks                         => short+                # a prefix matches itself
    POST /hooks/                        => short+/               # and what is under it
    POST /hooks/stripe                  => short+/stripe         # `/x/` needs its slash
    POST /hooksfoo                      => 404                   # whole segments only
    POST /hooks/stripefoo               => short+/stripefoo      # whole segments only
    POST /nothing                       => 404                   # no route
    POST /                              => 404                   # no route at the root
    POST hooks.example.com /site/a      => hosted+               # a host route
    POST HOOKS.Example.COM /site/a      => hosted+               # host case is ignored
    POST hooks.example.com:8080 /site/a => hosted+               # and so is the port
    POST /site/a                        => site+/a               # no Host: host-less routes
    POST other.example /site/a          => site+/a               # another host: the same
    POST hooks.example.com /site/p/x    => hosted-prefix+x       # host routes first
    POST /site/p/x                      => site-exact+           # then host-less ones
    POST hooks.example.com:8443 /site/b => with-port+            # a port written in `host`
    POST hooks.example.com /site/b      => site+/b               # must be sent
    POST hooks.example.com:9 /site/b    => site+/b               # and be the same
    POST [::1]:8080 /site/c             => v6+                   # IPv6 host, port ignored
    POST t.example:8080 /tie            => tie-port+             # a tie: written first wins
    POST t.example:8080 /tie2           => bare-first+           # a tie: written first wins
    POST /m                             => m-post+               # methods split across routes
    PUT /m                              => m-get+                # methods split across routes
    DELETE /m                           => 405 [POST, GET, PUT]  # 405 lists every method
    POST /get/x                         => 405 [GET]             # 405 on a prefix too
    GET /get/x                          => get-only+x            # a prefix route's method
";

/// Asserts `rules` (written like [`RULES`]), and that spaces around the host
/// are ignored, against a table holding [`cast`] among any number of other routes.
fn assert_rules(t: &RouteTable, rules: &str) {
    for line in rules.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (request, outcome) = line.split_once(" => ").unwrap();
        let (want, rule) = outcome.split_once('#').unwrap();
        let words: Vec<&str> = request.split_whitespace().collect();
        let (method, host, path) = match words[..] {
            [method, host, path] => (method, Some(host), path),
            [method, path] => (method, None, path),
            _ => unreachable!("{line}"),
        };
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        assert_eq!(
            lookup(t, host, path, &method),
            want.trim(),
            "{rule}: {request}"
        );
    }
    assert_eq!(
        lookup(t, Some(" hooks.example.com\t"), "/site/a", &Method::POST),
        "hosted+",
        "spaces around the host"
    );
}

/// `n` routes around the cast's paths and hosts that must not change its matches.
fn neighbours(n: usize) -> Vec<Route> {
    let post = [Method::POST];
    (0..n)
        .map(|i| {
            let name = format!("n{i}");
            let (host, path) = match i % 8 {
                0 => (None, exact(&format!("/hooks/stripe/x{i}"))),
                1 => (None, prefix(&format!("/hooks{i}"))),
                2 => (None, prefix(&format!("/hooks/stripe/x/{i}/"))),
                3 => (Some(format!("n{i}.example")), exact("/site/a")),
                4 => (Some(format!("n{i}.example")), prefix("/hooks/")),
                5 => (
                    Some("hooks.example.com".to_owned()),
                    exact(&format!("/site/a{i}")),
                ),
                6 => (
                    Some("hooks.example.com".to_owned()),
                    prefix(&format!("/site/{i}")),
                ),
                _ => (None, exact(&format!("/m{i}"))),
            };
            built(&name, host.as_deref(), path, &post)
        })
        .collect()
}

/// How [`neighbours`] match, among the cast.
const NEIGHBOUR_RULES: &str = "
    POST /hooks/stripe/x/7/             => long+x/7/             # no neighbour has this prefix
    POST /hooks/stripe/x/10             => long+x/10             # `/hooks/stripe/x/10/` needs its slash
    POST /hooks/stripe/x/10/a           => n10+a                 # but is there
    POST /hooks9                        => n9+                   # a prefix next to `/hooks`
    POST /hooks9/z                      => n9+/z                 # a prefix next to `/hooks`
    POST N99979.example /site/a         => n99979+               # one host among many
    POST n99980.example /hooks/a        => n99980+a              # one host among many
    POST hooks.example.com /site/6/q    => n6+/q                 # one prefix among many of a host
    GET /m99983                         => 405 [POST]            # the last route
";

#[test]
fn every_rule_holds_in_a_table_of_only_its_routes() {
    assert_rules(&RouteTable::new(cast()), RULES);
}

#[test]
fn every_rule_holds_among_100_000_routes() {
    let mut routes = neighbours(100_000 - cast().len());
    let middle = routes.split_off(routes.len() / 2);
    routes.extend(cast());
    routes.extend(middle);
    let t = RouteTable::new(routes);
    assert_eq!(t.len(), 100_000);
    assert_rules(&t, RULES);
    assert_rules(&t, NEIGHBOUR_RULES);
}

#[test]
fn one_route_alone() {
    let t = RouteTable::new(vec![built("only", None, exact("/a"), &[Method::POST])]);
    assert_eq!((t.len(), t.is_empty()), (1, false));
    assert_eq!(lookup(&t, None, "/a", &Method::POST), "only+");
    assert_eq!(
        lookup(&t, Some("any.example"), "/a", &Method::POST),
        "only+"
    );
    assert_eq!(lookup(&t, None, "/a/", &Method::POST), "404");
    assert_eq!(lookup(&t, None, "/a", &Method::GET), "405 [POST]");
    let empty = RouteTable::new(Vec::new());
    assert_eq!((empty.len(), empty.is_empty()), (0, true));
    assert_eq!(lookup(&empty, None, "/a", &Method::POST), "404");
}

#[test]
fn iter_is_in_config_order() {
    let t = RouteTable::new(cast());
    let names: Vec<String> = t.iter().map(|r| r.name.clone()).collect();
    let want: Vec<String> = cast().into_iter().map(|r| r.name).collect();
    assert_eq!(names, want);
}

// === The indexed table against the definition ===

/// The matching rules as written: try every route with a host, then every
/// host-less one; exact paths first, then prefixes longest first; on a tie, the
/// route written first; then the method decides among the routes with that
/// host and path rule.
fn by_definition(routes: &[&Route], host: Option<&str>, path: &str, method: &Method) -> String {
    let host = host.map(|h| h.trim().to_ascii_lowercase());
    let host_ok = |want: &Option<String>| match (want, &host) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(want), Some(got)) => got == want || strip_port(got) == want,
    };
    let path_rank = |rule: &PathMatch| match rule {
        PathMatch::Exact(p) => (p == path).then_some((usize::MAX, "")),
        PathMatch::Prefix(p) => {
            let rest = path.strip_prefix(p.as_str())?;
            (p.ends_with('/') || rest.is_empty() || rest.starts_with('/'))
                .then_some((p.len(), rest))
        }
    };
    let best = routes
        .iter()
        .enumerate()
        .filter(|(_, r)| host_ok(&r.host))
        .filter_map(|(i, r)| Some((r.host.is_some(), path_rank(&r.path)?, Reverse(i), r)))
        .max_by_key(|(hosted, (rank, _), i, _)| (*hosted, *rank, *i));
    let Some((_, (_, remainder), _, first)) = best else {
        return "404".to_owned();
    };
    let group: Vec<&&Route> = routes
        .iter()
        .filter(|r| r.host == first.host && r.path == first.path)
        .collect();
    match group.iter().find(|r| r.methods.contains(method)) {
        Some(r) => format!("{}+{remainder}", r.name),
        None => {
            let allowed: Vec<&Method> = group.iter().flat_map(|r| r.methods.iter()).collect();
            format!("405 {allowed:?}")
        }
    }
}

/// A xorshift generator: the same cases on every run, without a dependency.
struct Cases(u64);

impl Cases {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// One to four segments of a few short names, empty ones too.
    fn path(&mut self) -> String {
        let mut path = String::new();
        for _ in 0..=self.below(4) {
            path.push('/');
            let segment = self.pick(&["a", "ab", "b", ""]);
            path.push_str(segment);
        }
        path
    }
}

#[test]
fn the_index_matches_like_the_definition() {
    let mut cases = Cases(0x2545_f491_4f6c_dd1d);
    let hosts = [
        None,
        Some("a.example"),
        Some("a.example:8080"),
        Some("[::1]"),
        Some("b.example"),
    ];
    let methods = [
        vec![Method::POST],
        vec![Method::GET],
        vec![Method::POST, Method::GET],
        vec![Method::PUT, Method::GET],
    ];
    let routes: Vec<Route> = (0..400)
        .map(|i| {
            let path = cases.path();
            let rule = *cases.pick(&[exact, prefix]);
            let host = *cases.pick(&hosts);
            built(
                &format!("r{i}"),
                host,
                rule(&path),
                cases.pick(&methods).as_slice(),
            )
        })
        .collect();
    let t = RouteTable::new(routes);
    let routes: Vec<&Route> = t.iter().map(AsRef::as_ref).collect();
    let request_hosts = [
        None,
        Some("a.example"),
        Some("A.Example:8080"),
        Some("a.example:9"),
        Some("[::1]:1"),
        Some(" b.example"),
        Some("c.example"),
    ];
    for _ in 0..5_000 {
        let host = *cases.pick(&request_hosts);
        let path = cases.path();
        let method = cases.pick(&[Method::POST, Method::GET, Method::PUT, Method::DELETE]);
        assert_eq!(
            lookup(&t, host, &path, method),
            by_definition(&routes, host, &path, method),
            "{host:?} {method} {path}"
        );
    }
}
