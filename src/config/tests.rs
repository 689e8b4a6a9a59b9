//! Config loading: defaults, both spellings of lists, and one test per
//! diagnostic, pinned to its `PATH:LINE:COL`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Loaded, load, load_in_parts, load_str, parts};
use crate::base::diagnostics::Report;
use crate::base::settings::{FleetSettings, SpoolBackend};
use crate::forward::SharedPeer;
use crate::routes::PathMatch;

const ROUTE: &str = r#"
[[routes]]
name = "a"
path = "/a"
upstream = "http://127.0.0.1:3000/in"
[routes.verify]
scheme = "rye"
secrets = ["s"]
"#;

/// [`ROUTE`] named `name`, on path `/NAME`, with `extra` lines after its name.
fn named(name: &str, extra: &str) -> String {
    ROUTE
        .replace("name = \"a\"", &format!("name = \"{name}\"\n{extra}"))
        .replace("\"/a\"", &format!("\"/{name}\""))
}

/// The diagnostics of `text`, which must not load.
pub(crate) fn errors(text: &str) -> Vec<String> {
    match load_str(Path::new("c.toml"), text) {
        Ok(_) => panic!("expected errors in:\n{text}"),
        Err(report) => report.lines().to_vec(),
    }
}

#[test]
fn shipped_config_is_valid_and_warning_free() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/hookgate.toml");
    let loaded = load(&path).unwrap_or_else(|r| panic!("{r}"));
    assert!(loaded.warnings.lines().is_empty(), "{}", loaded.warnings);
    let names: Vec<&str> = loaded
        .config
        .routes
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, ["rye", "aryeo", "generic"]);
}

#[test]
fn defaults_apply_and_overrides_win() {
    let text = format!(
        "{ROUTE}\n[[routes]]\nname = \"b\"\npath_prefix = \"/b/\"\nupstream = \"https://127.0.0.1\"\nmax_body_bytes = 7\nmethods = [\"post\", \"GET\"]\n[routes.verify]\nscheme = \"aryeo\"\nsecrets = [\"s\"]\n"
    );
    let c = load_str(Path::new("c.toml"), &text).unwrap().config;
    assert_eq!(c.server.listen, ["127.0.0.1:8080".parse().unwrap()]);
    assert_eq!(c.generation, 1);
    let a = c.routes.iter().find(|r| r.name == "a").unwrap();
    assert_eq!(a.max_body_bytes, 1024 * 1024);
    assert_eq!(a.read_timeout.as_millis(), 10_000);
    assert_eq!(a.upstream_timeout.as_millis(), 10_000);
    assert_eq!(*a.methods, [http::Method::POST]);
    assert_eq!(a.upstream.path.as_deref(), Some("/in"));
    assert!(!a.upstream.tls);
    let b = c.routes.iter().find(|r| r.name == "b").unwrap();
    assert_eq!(b.max_body_bytes, 7);
    assert_eq!(*b.methods, [http::Method::POST, http::Method::GET]);
    assert_eq!(b.path, PathMatch::Prefix("/b/".to_owned()));
    assert_eq!(
        (
            b.upstream.tls,
            b.upstream.addr.port(),
            b.upstream.path.as_deref()
        ),
        (true, 443, None)
    );
}

#[test]
fn listen_and_verify_accept_one_or_many() {
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:1\", \"[::1]:2\"]\n{ROUTE}\n[[routes]]\nname = \"b\"\npath = \"/b\"\nupstream = \"http://127.0.0.1:1\"\n[[routes.verify]]\nscheme = \"rye\"\nsecrets = [\"x\"]\n[[routes.verify]]\nscheme = \"rye-v1\"\nsecrets = [\"y\", \"z\"]\n"
    );
    let c = load_str(Path::new("c.toml"), &text).unwrap().config;
    assert_eq!(c.server.listen.len(), 2);
    let b = c.routes.iter().find(|r| r.name == "b").unwrap();
    let schemes: Vec<&str> = b
        .verifiers
        .iter()
        .map(|v| v.scheme().name.as_str())
        .collect();
    assert_eq!(schemes, ["rye", "rye-v1"]);
}

#[test]
fn toml_syntax_error_has_line_and_column() {
    assert_eq!(
        errors("[server]\nlisten = \n"),
        ["c.toml:2:10: string values must be quoted, expected literal string"]
    );
}

#[test]
fn unknown_keys_are_refused() {
    let text = ROUTE.replace("secrets = [\"s\"]", "secrets = [\"s\"]\ntolerance_sec = 5");
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("c.toml:9:1: unknown field `tolerance_sec`"),
        "{e:?}"
    );
}

#[test]
fn semantic_errors_are_all_reported_with_positions() {
    let text = r#"
[[routes]]
name = "a"
path = "/a"
upstream = "ftp://127.0.0.1/x"
[routes.verify]
scheme = "stripey"
secrets = ["env:HOOKGATE_TEST_SURELY_UNSET", "file:/nonexistent/hookgate/secret"]

[[routes]]
name = "a"
path = "/b"
upstream = "http://127.0.0.1:3000"
[routes.verify]
scheme = "rye"
secrets = ["s"]
"#;
    let e = errors(text);
    assert_eq!(
        e,
        [
            "c.toml:5:12: upstream URL `ftp://127.0.0.1/x` must start with http:// or https://",
            "c.toml:7:10: unknown scheme `stripey`; did you mean `stripe`? `hookgate schemes` lists the built-in ones",
            "c.toml:8:12: environment variable `HOOKGATE_TEST_SURELY_UNSET` is not set",
            "c.toml:8:46: cannot read secret file `/nonexistent/hookgate/secret`: No such file or directory (os error 2)",
            "c.toml:11:8: duplicate route name `a`",
        ]
    );
}

#[test]
fn overlapping_routes_are_refused_but_disjoint_methods_are_not() {
    let overlap = format!("{ROUTE}{}", ROUTE.replace("name = \"a\"", "name = \"b\""));
    assert_eq!(
        errors(&overlap),
        ["c.toml:12:8: route `b` overlaps route `a`: same host, path and method POST"]
    );
    let disjoint = format!(
        "{ROUTE}{}",
        ROUTE.replace("name = \"a\"", "name = \"b\"\nmethods = [\"GET\"]")
    );
    assert!(load_str(Path::new("c.toml"), &disjoint).is_ok());
    let other_host = format!(
        "{ROUTE}{}",
        ROUTE.replace("name = \"a\"", "name = \"b\"\nhost = \"x.example\"")
    );
    assert!(load_str(Path::new("c.toml"), &other_host).is_ok());
}

#[test]
fn each_overlap_names_the_first_earlier_route_and_the_first_shared_method() {
    let route = |name: &str, rule: &str| {
        ROUTE
            .replace("name = \"a\"", &format!("name = \"{name}\""))
            .replace("path = \"/a\"", rule)
    };
    let text = [
        route("a", "path = \"/a\""),
        route("b", "path = \"/a\"\nmethods = [\"GET\"]"),
        route("c", "path = \"/a\"\nmethods = [\"PUT\", \"get\", \"POST\"]"),
        route("d", "path = \"/a\"\nmethods = [\"get\"]"),
        route("e", "path_prefix = \"/a\""),
        route("f", "path_prefix = \"/a\"\nhost = \"X.example\""),
        route("g", "path_prefix = \"/a\"\nhost = \" x.example\""),
        route("h", "path = \"/a\"\nhost = \"x.example\""),
        route("i", "path_prefix = \"/a\"\nmethods = [\"PUT\"]"),
        route("j", "path = \"/a\"\nmethods = []"),
        route("k", "path = \"/a\"\nmethods = [\"PUT\"]"),
    ]
    .concat();
    let e: Vec<String> = errors(&text)
        .into_iter()
        .filter(|e| e.contains("overlaps"))
        .collect();
    assert_eq!(
        e,
        [
            "c.toml:21:8: route `c` overlaps route `a`: same host, path and method POST",
            "c.toml:30:8: route `d` overlaps route `b`: same host, path and method GET",
            "c.toml:56:15: route `g` overlaps route `f`: same host, path and method POST",
            "c.toml:92:8: route `k` overlaps route `c`: same host, path and method PUT",
        ]
    );
}

#[test]
fn a_fingerprint_changes_with_what_its_route_does_and_only_then() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let self_signed = || {
        rcgen::generate_simple_self_signed(["upstream.example".to_owned()])
            .unwrap()
            .cert
            .pem()
    };
    std::fs::write(&ca, self_signed()).unwrap();
    let route = named;
    let text = [
        route("plain", ""),
        route("timeout", "upstream_timeout_ms = 100"),
        route("mine", "").replace("scheme = \"rye\"", "scheme = \"mine\""),
        route("tls", "upstream_ca_file = \"ca.pem\"")
            .replace("http://127.0.0.1:3000/in", "https://127.0.0.1:3000/in"),
        route("generic", "").replace("scheme = \"rye\"", "scheme = \"hmac\"\nheader = \"x-sig\""),
        "[schemes.mine]\nalgorithm = \"hmac-sha256\"\nsignature = { header = \"x-mine\" }\n"
            .to_owned(),
    ]
    .concat();
    let fingerprints = |text: &str| -> Vec<(String, [u8; 32])> {
        let path = dir.path().join("c.toml");
        let loaded = load_str(&path, text).unwrap_or_else(|r| panic!("{r}"));
        loaded
            .config
            .routes
            .iter()
            .map(|r| (r.name.clone(), r.fingerprint))
            .collect()
    };
    let changed = |before: &[(String, [u8; 32])], after: &[(String, [u8; 32])]| -> Vec<String> {
        before
            .iter()
            .zip(after)
            .filter(|(b, a)| b.1 != a.1)
            .map(|(b, _)| b.0.clone())
            .collect()
    };
    let before = fingerprints(&text);
    assert_eq!(changed(&before, &fingerprints(&text)), Vec::<String>::new());
    let cases = [
        (
            "upstream_timeout_ms = 100",
            "upstream_timeout_ms = 101",
            "timeout",
        ),
        ("\"x-mine\"", "\"x-yours\"", "mine"),
        ("header = \"x-sig\"", "header = \"x-sig2\"", "generic"),
    ];
    for (from, to, name) in cases {
        let after = fingerprints(&text.replace(from, to));
        assert_eq!(changed(&before, &after), [name], "{from} → {to}");
    }
    std::fs::write(&ca, self_signed()).unwrap();
    assert_eq!(
        changed(&before, &fingerprints(&text)),
        ["tls"],
        "another CA certificate"
    );
}

#[test]
fn path_rules_and_names_are_checked() {
    assert_eq!(
        errors(&ROUTE.replace("path = \"/a\"", "path = \"/a\"\npath_prefix = \"/a/\"")),
        ["c.toml:5:15: set either `path` or `path_prefix`, not both"]
    );
    assert_eq!(
        errors(&ROUTE.replace("path = \"/a\"\n", "")),
        ["c.toml:3:8: route `a` needs `path` or `path_prefix`"]
    );
    assert_eq!(
        errors(&ROUTE.replace("\"/a\"", "\"a?x\"")),
        ["c.toml:4:8: path `a?x` must start with `/` and have no query, fragment or spaces"]
    );
    assert_eq!(
        errors(&ROUTE.replace("\"a\"", "\"A b\"")),
        ["c.toml:3:8: route name `A b` must match [a-z0-9_-]+"]
    );
}

#[test]
fn generic_scheme_needs_its_keys_and_builtin_refuses_them() {
    let hmac = ROUTE.replace(
        "scheme = \"rye\"",
        "scheme = \"hmac\"\npayload = \"{timestamp}.{body}\"",
    );
    assert_eq!(
        errors(&hmac),
        [
            "c.toml:7:10: scheme `hmac` needs `header`, the signature header's name",
            "c.toml:8:11: payload uses {timestamp} but `timestamp_header` is not set",
        ]
    );
    let bad = ROUTE.replace("scheme = \"rye\"", "scheme = \"hmac\"\nheader = \"x\"\nalgorithm = \"md5\"\nencoding = \"b32\"\npayload = \"{nope}\"");
    let e = errors(&bad);
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        e[0].starts_with("c.toml:9:13: unknown algorithm `md5`"),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("c.toml:10:12: unknown encoding `b32`"),
        "{e:?}"
    );
    assert!(
        e[2].starts_with("c.toml:11:11: unknown placeholder `{nope}`"),
        "{e:?}"
    );
    let builtin = ROUTE.replace("scheme = \"rye\"", "scheme = \"rye\"\nheader = \"x\"");
    assert_eq!(
        errors(&builtin),
        ["c.toml:8:10: `header` applies only to scheme = \"hmac\"; scheme `rye` fixes it"]
    );
}

#[test]
fn tolerance_on_an_unsigned_timestamp_is_a_warning() {
    let text = ROUTE.replace(
        "scheme = \"rye\"",
        "scheme = \"hmac\"\nheader = \"x-sig\"\ntimestamp_header = \"x-ts\"\ntolerance_secs = 60",
    );
    let loaded = load_str(Path::new("c.toml"), &text).unwrap();
    let w = loaded.warnings.lines();
    assert_eq!(w.len(), 1);
    assert!(
        w[0].starts_with("c.toml:10:18: warning: `tolerance_secs` has no effect"),
        "{w:?}"
    );
    let route = loaded.config.routes.iter().next().unwrap();
    assert_eq!(
        route.verifiers[0].tolerance_secs(),
        None,
        "an unsigned timestamp is never enforced"
    );

    let signed = text.replace(
        "scheme = \"hmac\"",
        "scheme = \"hmac\"\npayload = \"{timestamp}.{body}\"",
    );
    let loaded = load_str(Path::new("c.toml"), &signed).unwrap();
    assert!(loaded.warnings.lines().is_empty());
    assert_eq!(
        loaded.config.routes.iter().next().unwrap().verifiers[0].tolerance_secs(),
        Some(60)
    );
}

#[test]
fn numbers_must_be_positive() {
    assert_eq!(
        errors(&format!(
            "[server]\nmax_body_bytes = -1\nthreads = 0\n{ROUTE}"
        )),
        [
            "c.toml:2:18: `max_body_bytes` must be a positive integer",
            "c.toml:3:11: `threads` must be a positive integer"
        ]
    );
}

#[test]
fn unresolvable_upstream_host_is_an_error() {
    let e = errors(&ROUTE.replace("127.0.0.1:3000", "no-such-host.invalid:3000"));
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("c.toml:5:12: cannot resolve upstream host `no-such-host.invalid`"),
        "{e:?}"
    );
}

#[test]
fn routes_to_one_upstream_share_its_peer_and_each_reports_a_bad_host() {
    let route = |name: &str, upstream: &str, extra: &str| {
        named(name, extra).replace("http://127.0.0.1:3000/in", upstream)
    };
    let text = [
        route("a", "http://localhost:3000/x", ""),
        route("b", "http://localhost:3000/y", ""),
        route("c", "http://localhost:3001/x", ""),
        route("d", "http://localhost:3000/x", "upstream_timeout_ms = 5"),
    ]
    .concat();
    let c = load_str(Path::new("c.toml"), &text).unwrap().config;
    let peers: Vec<&SharedPeer> = c.routes.iter().map(|r| &r.upstream.peer).collect();
    let ports: Vec<u16> = c.routes.iter().map(|r| r.upstream.addr.port()).collect();
    assert_eq!(ports, [3000, 3000, 3001, 3000]);
    assert!(Arc::ptr_eq(peers[0], peers[1]), "same upstream");
    assert!(!Arc::ptr_eq(peers[0], peers[2]), "another port");
    assert!(!Arc::ptr_eq(peers[0], peers[3]), "another timeout");

    let bad = [
        route("a", "http://no-such-host.invalid:1/x", ""),
        route("b", "http://no-such-host.invalid:2/y", ""),
    ]
    .concat();
    let e = errors(&bad);
    assert_eq!(e.len(), 2, "{e:?}");
    for (error, line) in e.iter().zip([6, 15]) {
        let want = format!("c.toml:{line}:12: cannot resolve upstream host `no-such-host.invalid`");
        assert!(error.starts_with(&want), "{e:?}");
    }
}

#[test]
fn unreadable_file_is_reported() {
    let e = load(Path::new("/nonexistent/hookgate.toml")).unwrap_err();
    assert_eq!(e.lines().len(), 1);
    assert!(
        e.lines()[0].starts_with("/nonexistent/hookgate.toml:1:1: cannot read config:"),
        "{e}"
    );
}

#[test]
fn secrets_never_appear_in_diagnostics() {
    let text = ROUTE.replace(
        "secrets = [\"s\"]",
        "secrets = [\"SUPERSECRETVALUE\"]\nfoo = 1",
    );
    let e = errors(&text).join("\n");
    assert!(!e.contains("SUPERSECRETVALUE"), "{e}");
}

#[test]
fn upstream_ca_file_needs_https_and_real_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let bad_der = dir.path().join("bad.pem");
    let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    std::fs::write(&bad_der, pem).unwrap();
    let with_ca = |scheme: &str, file: &str| {
        ROUTE
            .replace(
                "http://127.0.0.1:3000",
                &format!("{scheme}://127.0.0.1:3000"),
            )
            .replace(
                "[routes.verify]",
                &format!("upstream_ca_file = \"{file}\"\n[routes.verify]"),
            )
    };
    let path = |p: &Path| p.display().to_string();
    assert_eq!(
        errors(&with_ca("http", &path(&not_pem))),
        ["c.toml:6:20: `upstream_ca_file` needs an https:// upstream"]
    );
    assert_eq!(
        errors(&with_ca("https", &path(&not_pem))),
        [format!(
            "c.toml:6:20: `{}` holds no PEM certificate",
            path(&not_pem)
        )]
    );
    assert_eq!(
        errors(&with_ca("https", &path(&bad_der))),
        [format!(
            "c.toml:6:20: `{}` holds an invalid certificate",
            path(&bad_der)
        )]
    );
    let missing = errors(&with_ca("https", "missing.pem"));
    assert!(
        missing[0].starts_with("c.toml:6:20: cannot read `missing.pem`"),
        "{missing:?}"
    );
}

#[test]
fn scheme_descriptor_problems_are_reported_with_positions() {
    let text = r#"
[schemes.bad]
algorithm = "hmac-md5"
signed = "{timestamp}{nope}"
signature = { header = "X-Sig", format = "kv" }

[schemes.stripe]
algorithm = "hmac-sha256"
signature = { header = "X-Sig" }
"#;
    let e = errors(text);
    assert_eq!(e.len(), 4, "{e:?}");
    assert!(
        e[0].starts_with("c.toml:3:13: unknown algorithm `hmac-md5`"),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("c.toml:4:10: unknown placeholder `{nope}`"),
        "{e:?}"
    );
    assert_eq!(
        e[2],
        "c.toml:5:42: format `kv` needs `key` (the key whose values are signatures, e.g. v1)"
    );
    assert_eq!(
        e[3],
        "c.toml:7:1: scheme `stripe` is built in; give yours another name"
    );
}

/// Found by the `signature` fuzz target: with the separator a format also
/// writes inside each entry, what the scheme signs could never be read back.
#[test]
fn a_separator_the_format_uses_inside_entries_is_refused() {
    let text = r#"
[schemes.versioned]
algorithm = "hmac-sha256"
signature = { header = "X-Sig", format = "versioned", key = "v1", separator = "," }

[schemes.kv]
algorithm = "hmac-sha256"
signature = { header = "X-Sig", format = "kv", key = "v1", separator = "=" }
"#;
    assert_eq!(
        errors(text),
        [
            "c.toml:4:79: `separator` cannot be `,`: the versioned format writes it inside each entry",
            "c.toml:8:72: `separator` cannot be `=`: the kv format writes it inside each entry",
        ]
    );
}

#[test]
fn labelled_pairs_sha1_keys_and_optional_newlines_are_checked() {
    let text = r#"
[schemes.pairs-bar]
algorithm = "hmac-sha1"
signature = { form = "sig", format = "pairs", separator = "|" }

[schemes.pairs-key]
algorithm = "hmac-sha1"
signature = { form = "sig", format = "pairs", key = "pub" }

[schemes.sha1-token]
algorithm = "token"
key = "sha1"
signature = { header = "X-Token" }

[schemes.newline-ed25519]
algorithm = "ed25519"
key = "hex"
optional_newline = true
signature = { header = "X-Sig" }
"#;
    assert_eq!(
        errors(text),
        [
            "c.toml:4:59: `separator` cannot be `|`: the pairs format writes it inside each entry",
            "c.toml:8:53: `key` does not apply to the pairs format: each secret carries its label, as `label|secret`",
            "c.toml:11:13: warning: the signature does not cover the body: a captured signature can carry another body",
            "c.toml:12:7: key format does not fit algorithm `token`",
            "c.toml:18:20: `optional_newline` applies to the hmac-sha1, hmac-sha256 and hmac-sha512 algorithms",
        ]
    );
    let braintree = ROUTE
        .replace("scheme = \"rye\"", "scheme = \"braintree\"")
        .replace("[\"s\"]", "[\"s3cret-without-its-public-key\"]");
    assert_eq!(
        errors(&braintree),
        [
            "c.toml:8:12: the secret must be written LABEL|SECRET (for Braintree: \
             public_key|private_key), both non-empty for scheme `braintree`"
        ]
    );
}

#[test]
fn handshakes_without_when_and_signatures_in_the_query_are_checked() {
    let text = r#"
[schemes.any-post]
algorithm = "hmac-sha256"
signature = { header = "X-Sig", query = "sig" }
[[schemes.any-post.handshake]]
method = "POST"

[schemes.empty-query]
algorithm = "hmac-sha256"
signature = { query = "" }
[[schemes.empty-query.handshake]]
body = "{optional:nope}"
"#;
    assert_eq!(
        errors(text),
        [
            "c.toml:4:13: the signature needs exactly one of `header`, `json`, `form` or `query`",
            "c.toml:6:10: a handshake without `when` needs method = \"GET\" or \"HEAD\"",
            "c.toml:10:13: the signature needs exactly one of `header`, `json`, `form` or `query`",
            "c.toml:12:8: a handshake without `when` needs method = \"GET\" or \"HEAD\"",
            "c.toml:12:8: `nope` is not a source; write header:NAME, json:/pointer, query:NAME, form:NAME or signature:KEY",
        ]
    );
}

#[test]
fn weak_user_schemes_are_warned_about() {
    let text = format!(
        "{}\n[schemes.weak]\nalgorithm = \"hmac-sha256\"\nsigned = \"{{header:X-Id}}\"\nsignature = {{ header = \"X-Sig\" }}\n\
         [[schemes.weak.handshake]]\nverify_first = false\nwhen = \"json:/token\"\nbody = \"{{hmac:json:/token}}\"\n",
        ROUTE.replace("scheme = \"rye\"", "scheme = \"weak\"")
    );
    let loaded = load_str(Path::new("c.toml"), &text).unwrap();
    let w = loaded.warnings.lines();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].starts_with(
            "c.toml:7:10: warning: route `a`: the `weak` handshake: this answer gives anyone a MAC under your secret"
        ),
        "the route using it is named: {w:?}"
    );
    assert!(
        w[1].contains("warning: the signature does not cover the body"),
        "{w:?}"
    );
}

/// Every handshake answering with a MAC of request data under the route's
/// secret is warned about for each route using it, built in or not, with
/// what bounds it: verifying first (zoom), the token's characters and a
/// JSON-only scheme (twitter), or nothing.
#[test]
fn handshakes_that_mac_request_data_are_warned_about_per_route() {
    let zoom = named("z", "").replace("\"rye\"", "\"zoom\"");
    let twitter = named("t", "").replace("\"rye\"", "\"twitter\"");
    let own = named("o", "")
        + "[[routes.handshake]]\nverify_first = false\nmethod = \"GET\"\nwhen = \"query:c\"\nbody = \"{hmac:query:c}\"\n";
    let text = format!("{zoom}{twitter}{own}");
    let loaded = load_str(Path::new("c.toml"), &text).unwrap();
    assert_eq!(
        loaded.warnings.lines(),
        [
            "c.toml:8:10: warning: route `z`: the `zoom` handshake answers with a MAC of request data \
             under the route's secret; bounded: it answers only requests that verify first",
            "c.toml:17:10: warning: route `t`: the `twitter` handshake answers an unsigned request \
             with a MAC of request data under the route's secret; bounded: it MACs only a token of \
             1 to 256 bytes of A-Z a-z 0-9 - . _ ~ + / =, and scheme `twitter` accepts only JSON \
             bodies, which no such token is",
            "c.toml:28:1: warning: route `o`: its own handshake: this answer gives anyone a MAC \
             under your secret without verifying first, and scheme `rye` may take it for the \
             signature of a body the caller chose; a scheme that signs {body} with \
             `body_format = \"json\"` refuses such bodies",
        ]
    );
    let json_only = format!(
        "{}\n[schemes.acme]\nalgorithm = \"hmac-sha256\"\nbody_format = \"json\"\nsignature = {{ header = \"X-Sig\" }}\n\
         [[schemes.acme.handshake]]\nverify_first = false\nmethod = \"GET\"\nwhen = \"query:c\"\nbody = \"{{hmac:query:c}}\"\n",
        ROUTE.replace("\"rye\"", "\"acme\"")
    );
    let w = load_str(Path::new("c.toml"), &json_only).unwrap().warnings;
    assert!(
        w.lines()[0].contains("bounded: it MACs only a token"),
        "{w}"
    );
    let bad = format!(
        "{}\n[schemes.acme]\nalgorithm = \"hmac-sha256\"\nbody_format = \"xml\"\nsignature = {{ header = \"X-Sig\" }}\n",
        ROUTE.replace("\"rye\"", "\"acme\"")
    );
    assert_eq!(
        errors(&bad),
        [
            "c.toml:7:10: unknown scheme `acme`; `hookgate schemes` lists the built-in ones",
            "c.toml:12:15: unknown body format `xml`; use any or json",
        ]
    );
}

#[test]
fn a_meta_route_needs_a_verify_token_and_gets_get() {
    let meta = ROUTE.replace("scheme = \"rye\"", "scheme = \"meta\"");
    assert_eq!(
        errors(&meta),
        [
            "c.toml:3:8: route `a` answers a subscription handshake that checks a verify token: set `verify_token`"
        ]
    );
    let with_token = meta.replace(
        "[routes.verify]",
        "verify_token = \"env:PATH\"\n[routes.verify]",
    );
    let c = load_str(Path::new("c.toml"), &with_token).unwrap().config;
    let route = c.routes.iter().next().unwrap();
    assert_eq!(*route.methods, [http::Method::POST, http::Method::GET]);
    assert!(route.verify_token.is_some());
}

#[test]
fn a_key_that_does_not_fit_the_scheme_is_an_error_at_the_secret() {
    let discord = ROUTE.replace("scheme = \"rye\"", "scheme = \"discord\"");
    assert_eq!(
        errors(&discord),
        ["c.toml:8:12: the secret is not valid hex for scheme `discord`"]
    );
    let short = discord.replace("[\"s\"]", "[\"abcd\"]");
    assert_eq!(
        errors(&short),
        [
            "c.toml:8:12: an Ed25519 public key is 32 bytes; this secret decodes to 2 for scheme `discord`"
        ]
    );
}

#[test]
fn operations_settings_have_defaults_and_are_checked() {
    let c = load_str(Path::new("/etc/hg/c.toml"), ROUTE).unwrap().config;
    assert_eq!(c.server.admin_listen, None);
    assert_eq!(
        c.server.access_log,
        crate::observe::access_log::Target::Stdout
    );
    assert_eq!(c.server.shutdown_grace.as_secs(), 30);

    let text = "[server]\nadmin_listen = \"127.0.0.1:9090\"\naccess_log = \"logs/access.log\"\nshutdown_grace_secs = 5\n";
    let c = load_str(Path::new("/etc/hg/c.toml"), text).unwrap().config;
    assert_eq!(
        c.server.admin_listen,
        Some("127.0.0.1:9090".parse().unwrap())
    );
    let file = PathBuf::from("/etc/hg/logs/access.log");
    assert_eq!(
        c.server.access_log,
        crate::observe::access_log::Target::File(file)
    );
    assert_eq!(c.server.shutdown_grace.as_secs(), 5);
    let off = load_str(Path::new("c.toml"), "[server]\naccess_log = \"off\"\n").unwrap();
    assert_eq!(
        off.config.server.access_log,
        crate::observe::access_log::Target::Off
    );

    assert_eq!(
        errors("[server]\nlisten = \"127.0.0.1:8080\"\nadmin_listen = \"127.0.0.1:8080\"\n"),
        ["c.toml:3:16: `admin_listen` must not share a port with `listen`"]
    );
    assert_eq!(
        errors("[server]\nlisten = \"0.0.0.0:8080\"\nadmin_listen = \"127.0.0.1:8080\"\n"),
        ["c.toml:3:16: `admin_listen` must not share a port with `listen`"]
    );
    let apart = "[server]\nlisten = \"127.0.0.1:8080\"\nadmin_listen = \"127.0.0.2:8080\"\n";
    assert!(load_str(Path::new("c.toml"), apart).is_ok());
    assert_eq!(
        errors("[server]\nadmin_listen = \"localhost\"\n"),
        ["c.toml:2:16: invalid admin_listen address `localhost`; write IP:PORT"]
    );
    assert_eq!(
        errors("[server]\nshutdown_grace_secs = 0\n"),
        ["c.toml:2:23: `shutdown_grace_secs` must be a positive integer"]
    );
}

#[test]
fn body_budget_and_pace_settings_have_defaults_and_are_checked() {
    let c = load_str(Path::new("c.toml"), ROUTE).unwrap().config;
    let front = c.server.front;
    assert_eq!(front.max_inflight_body_bytes, 256 * 1024 * 1024);
    assert_eq!(front.max_inflight_body_bytes_per_client, 32 * 1024 * 1024);
    assert_eq!(front.min_body_bytes_per_sec, 1024);

    let text = format!(
        "[server]\nmax_inflight_body_bytes = 80000000\nmin_body_bytes_per_sec = 0\n{ROUTE}"
    );
    let front = load_str(Path::new("c.toml"), &text)
        .unwrap()
        .config
        .server
        .front;
    assert_eq!(
        front.max_inflight_body_bytes_per_client, 10_000_000,
        "an eighth"
    );
    assert_eq!(front.min_body_bytes_per_sec, 0, "0 turns it off");
    let text = format!("[server]\nmax_inflight_body_bytes_per_client = 80000000\n{ROUTE}");
    let front = load_str(Path::new("c.toml"), &text)
        .unwrap()
        .config
        .server
        .front;
    assert_eq!(front.max_inflight_body_bytes_per_client, 80_000_000);

    assert_eq!(
        errors(
            "[server]\nmax_inflight_body_bytes = 1000\nmax_inflight_body_bytes_per_client = 1001\n\
             min_body_bytes_per_sec = -1\nmax_body_bytes = 100\n"
        ),
        [
            "c.toml:3:38: `max_inflight_body_bytes_per_client` (1001) must not be over `max_inflight_body_bytes` (1000)",
            "c.toml:4:26: `min_body_bytes_per_sec` must not be negative",
        ]
    );
    assert_eq!(
        errors("[server]\nmax_inflight_body_bytes_per_client = 0\n"),
        ["c.toml:2:38: `max_inflight_body_bytes_per_client` must be a positive integer"]
    );
}

#[test]
fn a_body_limit_over_one_clients_share_is_a_warning() {
    let warnings = |text: &str| {
        let loaded = load_str(Path::new("c.toml"), text).unwrap_or_else(|r| panic!("{r}"));
        loaded.warnings.lines().to_vec()
    };
    let route = named("p", "max_body_bytes = 2000001");
    assert_eq!(
        warnings(&format!(
            "[server]\nmax_inflight_body_bytes_per_client = 2000000\n{route}"
        )),
        [
            "c.toml:6:18: warning: `max_body_bytes` (2000001) is over `max_inflight_body_bytes_per_client` \
             (2000000): a body larger than 2000000 bytes is always refused 503 `overloaded`"
        ]
    );
    // The server's default limit, against a share made small by the budget.
    assert_eq!(
        warnings(&format!(
            "[server]\nmax_inflight_body_bytes = 4194304\n{ROUTE}"
        )),
        [
            "c.toml:2:27: warning: `max_body_bytes` (1048576) is over `max_inflight_body_bytes_per_client` \
             (524288): a body larger than 524288 bytes is always refused 503 `overloaded`"
        ]
    );
    assert!(
        warnings(&format!(
            "[server]\nmax_inflight_body_bytes = 8388608\n{ROUTE}"
        ))
        .is_empty()
    );
}

/// What a load gives: a line per route with its name and fingerprint, then the
/// warnings; or the problems.
fn outcome(loaded: Result<Loaded, Report>) -> Result<Vec<String>, Vec<String>> {
    match loaded {
        Ok(loaded) => {
            let routes = loaded.config.routes.iter();
            let mut lines: Vec<String> = routes
                .map(|r| format!("{} {:?}", r.name, r.fingerprint))
                .collect();
            lines.extend_from_slice(loaded.warnings.lines());
            Ok(lines)
        }
        Err(report) => Err(report.lines().to_vec()),
    }
}

/// Loads `text` whole and in parts of about a route each: the same routes,
/// fingerprints, problems and files read either way.
fn assert_same_in_parts(text: &str) {
    let path = Path::new("c.toml");
    let cuts = parts::cuts(text, 100);
    assert!(cuts.len() > 3, "{cuts:?}");
    let (in_parts, files) = load_in_parts(path, text, &cuts).expect("every part parses");
    let (whole, whole_files) = super::load_str_reading(path, text);
    assert_eq!(outcome(in_parts), outcome(whole));
    assert_eq!(files, whole_files);
}

#[test]
fn a_file_loads_the_same_in_parts() {
    let schemes =
        "[schemes.mine]\nalgorithm = \"hmac-sha256\"\nsignature = { header = \"x-mine\" }\n\n";
    let routes = [
        named("a", "host = \"A.example\""),
        named("b", "methods = [\"put\", \"POST\"]"),
        named("c", "").replace("path = \"/c\"", "path_prefix = \"/c/\""),
        named("d", "").replace("scheme = \"rye\"", "scheme = \"mine\""),
        named("e", "").replace(
            "[routes.verify]\nscheme = \"rye\"\nsecrets = [\"s\"]",
            "[[routes.verify]]\nscheme = \"rye\"\nsecrets = [\"s\"]\n\
             [[routes.verify]]\nscheme = \"aryeo\"\nsecrets = [\"t\"]\ntolerance_secs = 5",
        ),
        named("f", ""),
    ]
    .concat();
    let text = format!("[server]\nlisten = \"127.0.0.1:1\"\n{schemes}{routes}");
    assert_same_in_parts(&text);
    let loaded = outcome(load_str(Path::new("c.toml"), &text)).unwrap();
    assert_eq!(loaded.len(), 7, "six routes and a warning: {loaded:?}");

    let broken = text
        .replace("name = \"f\"", "name = \"a\"")
        .replace("path = \"/e\"", "path = \"/b\"")
        .replace(
            "secrets = [\"t\"]",
            "secrets = [\"env:HOOKGATE_TEST_SURELY_UNSET\"]",
        );
    assert_same_in_parts(&broken);
    let problems = outcome(load_str(Path::new("c.toml"), &broken)).unwrap_err();
    let errors = problems.iter().filter(|p| !p.contains("warning")).count();
    assert_eq!(
        errors, 3,
        "a duplicate name, an overlap and a missing secret, in three parts: {problems:?}"
    );
}

#[test]
fn a_part_that_does_not_parse_leaves_it_to_the_whole_file() {
    let routes = ["a", "b", "c", "d", "e"].map(|n| named(n, "")).concat();
    let path = Path::new("c.toml");
    // The whole file reports every problem of a file that is TOML (the
    // `threads` of `[server]` and the route's), the first syntax error of one
    // that is not.
    for (from, to, problems) in [
        ("name = \"d\"", "name = \"d\"\nnope = 1", 2),
        ("name = \"d\"", "name = \"d", 1),
        ("path = \"/e\"", "path = 5", 2),
    ] {
        let text = format!("[server]\nthreads = \"many\"\n{}", routes.replace(from, to));
        let cuts = parts::cuts(&text, 100);
        assert!(cuts.len() > 3, "{cuts:?}");
        assert!(load_in_parts(path, &text, &cuts).is_none(), "{to}");
        let whole = outcome(load_str(path, &text)).unwrap_err();
        assert_eq!(whole.len(), problems, "{whole:?}");
    }
}

#[test]
fn a_file_of_100_000_routes_loads_in_parts() {
    // Exact, prefix, host and two-method routes in turn; `gitlab` compares a
    // token, the cheapest verifier to build in a debug build.
    let rules = [
        "path = \"/r/N\"",
        "path_prefix = \"/p/N/\"",
        "path = \"/h/N\"\nhost = \"hN.example\"",
        "path_prefix = \"/q/N\"\nmethods = [\"POST\", \"PUT\"]",
    ];
    let route = "[[routes]]\nname = \"rN\"\nRULE\nupstream = \"http://127.0.0.1:9/to/N\"\n\
                 verify = { scheme = \"gitlab\", secrets = [\"s\"] }\n\n";
    let mut text = String::from("[server]\nlisten = \"127.0.0.1:1\"\n\n");
    for i in 0..100_000 {
        let n = i.to_string();
        text.push_str(&route.replace("RULE", rules[i % 4]).replace('N', &n));
    }
    assert!(parts::cuts(&text, parts::PART_BYTES).len() > 10);
    let path = Path::new("c.toml");
    let c = load_str(path, &text)
        .unwrap_or_else(|r| panic!("{r}"))
        .config;
    assert_eq!(c.routes.len(), 100_000);
    let names: Vec<&str> = c.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!((names[0], names[99_999]), ("r0", "r99999"), "in file order");
    let last = [
        (None, "/r/99996", "r99996"),
        (None, "/p/99997/x", "r99997"),
        (Some("h99998.example"), "/h/99998", "r99998"),
        (None, "/q/99999", "r99999"),
    ];
    for (host, path, want) in last {
        match c.routes.find(host, path, &http::Method::POST) {
            crate::routes::Match::Found { route, .. } => assert_eq!(route.name, want),
            other => panic!("{path}: {other:?}"),
        }
    }
}

#[test]
fn tls_listen_needs_a_certificate_and_a_port_of_its_own() {
    assert_eq!(
        errors(&format!(
            "[server]\nlisten = \"127.0.0.1:8080\"\ntls_listen = \"127.0.0.1:8443\"\n{ROUTE}"
        )),
        ["c.toml:3:14: `tls_listen` needs at least one `[[server.tls]]` certificate"]
    );
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["a.example".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.path().join("a.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("a.key"), key.serialize_pem()).unwrap();
    std::fs::write(dir.path().join("garbage.pem"), "not a certificate").unwrap();
    let pair = |cert: &str, key: &str| {
        format!(
            "[[server.tls]]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            dir.path().join(cert).display(),
            dir.path().join(key).display()
        )
    };
    let shared_port = format!(
        "[server]\nlisten = \"127.0.0.1:8080\"\ntls_listen = \"0.0.0.0:8080\"\n{}{ROUTE}",
        pair("a.pem", "a.key")
    );
    assert_eq!(
        errors(&shared_port),
        ["c.toml:3:14: `tls_listen` address 0.0.0.0:8080 shares a port with 127.0.0.1:8080"]
    );
    let garbage = format!(
        "[server]\ntls_listen = \"127.0.0.1:8443\"\n{}{ROUTE}",
        pair("garbage.pem", "a.key")
    );
    let problems = errors(&garbage);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("c.toml:4:13: ")
            && problems[0].ends_with("holds no PEM certificate"),
        "{problems:?}"
    );
    let fine = format!(
        "[server]\ntls_listen = \"127.0.0.1:8443\"\n{}{ROUTE}",
        pair("a.pem", "a.key")
    );
    let loaded = load_str(Path::new("c.toml"), &fine).unwrap_or_else(|r| panic!("{r}"));
    let tls = loaded.config.tls.expect("certificates");
    assert_eq!(tls.0[0].names, ["a.example"]);
    assert_eq!(
        loaded.config.server.tls_listen,
        ["127.0.0.1:8443".parse().unwrap()]
    );
}

#[test]
fn policy_keys_are_built() {
    let extra = "mode = \"monitor\"\nallow_ips = [\"10.0.0.0/8\", \"192.0.2.1\"]\non_state_error = \"open\"\n\
                 require_headers = { \"X-Sender\" = \"tok\" }\n\
                 rate_limit = { per_second = 2.5, by = \"client_ip\" }\n\
                 dedup = { ttl_secs = 60 }\n\
                 forward_signature = { scheme = \"standard-webhooks\", secret = \"whsec_c2VjcmV0\" }";
    let text = format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n[server.state]\nmax_entries = 5\nredis_timeout_ms = 50\n{}",
        named("p", extra)
    );
    let c = load_str(Path::new("c.toml"), &text).unwrap().config;
    let p = c.routes.iter().next().unwrap().policy.as_deref().unwrap();
    assert!(p.monitor);
    assert_eq!(p.allow_ips.len(), 2);
    assert!(p.admits("192.0.2.1".parse().unwrap()) && !p.admits("192.0.2.2".parse().unwrap()));
    assert_eq!(p.require_headers[0].name.as_str(), "x-sender");
    let limit = p.rate_limit.unwrap();
    assert_eq!(
        (limit.per_second, limit.burst, limit.by.as_str()),
        (2.5, 3, "client_ip")
    );
    assert_eq!(p.dedup, Some(std::time::Duration::from_secs(60)));
    assert_eq!(p.on_state_error.as_str(), "open");
    assert!(p.forward_signature.is_some());
    assert_eq!(c.trusted_proxies, ["127.0.0.1/32".parse().unwrap()]);
    assert_eq!(c.server.state.max_entries, 5);
    assert_eq!(c.server.state.timeout.as_millis(), 50);
    assert!(c.server.state.redis.is_none());
    // A route that sets none of it carries no policy.
    let plain = load_str(Path::new("c.toml"), ROUTE).unwrap().config;
    assert!(plain.routes.iter().next().unwrap().policy.is_none());
}

#[test]
fn networks_written_ipv4_mapped_are_their_ipv4_networks() {
    let extra = "allow_ips = [\"::ffff:192.0.2.0/120\", \"::ffff:198.51.100.7\", \"::/0\"]";
    let text = format!(
        "[server]\ntrusted_proxies = [\"::ffff:10.0.0.0/104\", \"::ffff:0:0/96\", \"::ffff:0:0/95\"]\n{}",
        named("p", extra)
    );
    let c = load_str(Path::new("c.toml"), &text).unwrap().config;
    let shown = |nets: &[ipnet::IpNet]| nets.iter().map(ToString::to_string).collect::<Vec<_>>();
    // What is not wholly inside ::ffff:0:0/96 stays IPv6.
    assert_eq!(
        shown(&c.trusted_proxies),
        ["10.0.0.0/8", "0.0.0.0/0", "::ffff:0.0.0.0/95"]
    );
    let p = c.routes.iter().next().unwrap().policy.as_deref().unwrap();
    assert_eq!(
        shown(&p.allow_ips),
        ["192.0.2.0/24", "198.51.100.7/32", "::/0"]
    );
    assert!(p.admits("192.0.2.9".parse().unwrap()));
}

#[test]
fn policy_errors_are_reported_with_positions() {
    let extra = "mode = \"shadow\"\nallow_ips = [\"10.0.0.0/33\"]\non_state_error = \"maybe\"\n\
                 require_headers = { \"bad header\" = \"x\" }\n\
                 rate_limit = { per_second = 0, by = \"user\" }\n\
                 dedup = { ttl_secs = 0 }\n\
                 forward_signature = { scheme = \"stripe\", secret = \"s\" }";
    let text = format!(
        "[server]\ntrusted_proxies = [\"proxy\"]\n[server.state]\nredis_url = \"http://x\"\n{}",
        named("p", extra)
    );
    assert_eq!(
        errors(&text),
        [
            "c.toml:2:20: `proxy` is not a network; write a CIDR like `10.0.0.0/8` or an address",
            "c.toml:4:13: `redis_url` must be a redis:// or rediss:// URL",
            "c.toml:8:8: `mode` is `enforce` or `monitor`, not `shadow`",
            "c.toml:9:14: `10.0.0.0/33` is not a network; write a CIDR like `10.0.0.0/8` or an address",
            "c.toml:10:18: `on_state_error` is `closed` or `open`, not `maybe`",
            "c.toml:11:36: `bad header` is not a header name",
            "c.toml:12:29: `per_second` must be a positive number",
            "c.toml:13:22: `ttl_secs` must be a positive integer",
            "c.toml:14:32: `forward_signature` signs with `standard-webhooks`, not `stripe`",
        ]
    );
}

#[test]
fn dedup_on_a_scheme_without_event_ids_is_a_warning() {
    let text = named("p", "dedup = { ttl_secs = 60 }").replace("\"rye\"", "\"aryeo\"");
    let loaded = load_str(Path::new("c.toml"), &text).unwrap();
    let w = loaded.warnings.lines();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("warning: a scheme of this route has no event id"),
        "{w:?}"
    );
    let with_ids = named("p", "dedup = { ttl_secs = 60 }");
    assert!(
        load_str(Path::new("c.toml"), &with_ids)
            .unwrap()
            .warnings
            .lines()
            .is_empty()
    );
}

#[test]
fn dedup_resting_on_an_unsigned_id_is_a_warning_with_its_position() {
    // GitHub's delivery GUID is a header the signature does not cover.
    let text = named("p", "dedup = { ttl_secs = 60 }").replace("\"rye\"", "\"github\"");
    let loaded = load_str(Path::new("c.toml"), &text).unwrap();
    assert_eq!(
        loaded.warnings.lines(),
        [
            "c.toml:4:9: warning: the event id of scheme `github` is not covered by its signature \
             (header:x-github-delivery): anyone can change it, so dedup keys on the SHA-256 of the body instead"
        ]
    );
    // Rye's body id is signed (its header id is only passed on): no warning,
    // nor without dedup.
    for quiet in [
        named("p", "dedup = { ttl_secs = 60 }"),
        ROUTE.replace("\"rye\"", "\"github\""),
    ] {
        let loaded = load_str(Path::new("c.toml"), &quiet).unwrap();
        assert!(
            loaded.warnings.lines().is_empty(),
            "{:?}",
            loaded.warnings.lines()
        );
    }
}

#[test]
fn delivery_and_retry_keys_are_built_with_defaults() {
    let extra = "delivery = \"async\"\n\
                 retry = { max_attempts = 3, min_backoff_ms = 10, max_backoff_ms = 20, \
                 retry_on = [\"5xx\", \"409\", \"connect\"], concurrency = 2, ordering = \"fifo\" }";
    let text = format!(
        "[spool]\nbackend = \"local\"\ndir = \"q\"\nmax_bytes = 1000\n{}{}",
        named("p", extra),
        named("d", "delivery = \"async\"")
    );
    let c = load_str(Path::new("/etc/hg/c.toml"), &text).unwrap().config;
    assert_eq!(
        c.server.spool.backend,
        SpoolBackend::Local(PathBuf::from("/etc/hg/q"))
    );
    assert_eq!(c.server.spool.max_bytes, 1000);
    let route = |name: &str| c.routes.iter().find(|r| r.name == name).unwrap();
    let p = route("p").delivery.as_deref().unwrap();
    assert_eq!(p.max_attempts, 3);
    assert_eq!(p.max_age.as_secs(), 86_400);
    assert_eq!(p.min_backoff.as_millis(), 10);
    assert_eq!(p.max_backoff.as_millis(), 20);
    assert_eq!((p.concurrency, p.fifo), (2, true));
    assert!(p.retry_on.status(503) && p.retry_on.status(409) && !p.retry_on.status(429));
    assert!(p.retry_on.connect && !p.retry_on.timeout);
    let d = route("d").delivery.as_deref().unwrap();
    assert_eq!(
        (
            d.max_attempts,
            d.min_backoff.as_millis(),
            d.max_backoff.as_millis()
        ),
        (12, 1_000, 3_600_000)
    );
    assert_eq!((d.concurrency, d.fifo), (8, false));
    assert!(d.retry_on.status(500) && d.retry_on.status(408) && d.retry_on.status(429));
    assert!(!d.retry_on.status(404) && d.retry_on.timeout && d.retry_on.connect);
    // Sync by default, and the spool's defaults beside the config file.
    let plain = load_str(Path::new("/etc/hg/c.toml"), ROUTE).unwrap().config;
    assert!(plain.routes.iter().next().unwrap().delivery.is_none());
    assert_eq!(
        plain.server.spool.backend,
        SpoolBackend::Local(PathBuf::from("/etc/hg/spool"))
    );
    assert_eq!(plain.server.spool.max_bytes, 10 * 1024 * 1024 * 1024);
}

#[test]
fn delivery_errors_are_reported_with_positions() {
    let extra = "delivery = \"later\"";
    let retry = "delivery = \"async\"\n\
                 retry = { max_attempts = 0, min_backoff_ms = 50, max_backoff_ms = 5, \
                 retry_on = [\"6xx\", \"42\", \"soon\"], concurrency = 5000, ordering = \"lifo\" }";
    let signed = "delivery = \"async\"\n\
                  forward_signature = { scheme = \"standard-webhooks\", secret = \"whsec_c2VjcmV0\" }";
    let text = format!(
        "[spool]\nbackend = \"redis\"\nmax_bytes = -1\n{}{}{}",
        named("p", extra),
        named("q", retry),
        named("r", signed)
    );
    assert_eq!(
        errors(&text),
        [
            "c.toml:2:11: `backend = \"redis\"` needs `[server.state] redis_url`",
            "c.toml:3:13: `max_bytes` must be a positive integer",
            "c.toml:7:12: `delivery` is `sync` or `async`, not `later`",
            "c.toml:17:26: `max_attempts` must be a positive integer",
            "c.toml:17:46: `min_backoff_ms` (50) is over `max_backoff_ms` (5)",
            "c.toml:17:82: `retry_on` takes `5xx`-like classes, statuses like `429`, `timeout` and `connect`, not `6xx`",
            "c.toml:17:89: `retry_on` takes `5xx`-like classes, statuses like `429`, `timeout` and `connect`, not `42`",
            "c.toml:17:95: `retry_on` takes `5xx`-like classes, statuses like `429`, `timeout` and `connect`, not `soon`",
            "c.toml:17:118: `concurrency` is at most 1024",
            "c.toml:17:135: `ordering` is `none` or `fifo`, not `lifo`",
        ]
    );
}

#[test]
fn the_redis_spool_takes_the_state_redis_and_its_own_keys() {
    let text = format!(
        "[server.state]\nredis_url = \"redis://127.0.0.1:6390/2\"\nredis_timeout_ms = 70\n\
         [spool]\nbackend = \"redis\"\nclaim_after_secs = 4\n{}",
        named("p", "delivery = \"async\"")
    );
    let c = load_str(Path::new("c.toml"), &text).unwrap().config;
    let SpoolBackend::Redis(FleetSettings {
        redis,
        timeout,
        claim_after,
    }) = &c.server.spool.backend
    else {
        panic!("{:?}", c.server.spool.backend);
    };
    assert_eq!(redis.url, "redis://127.0.0.1:6390/2");
    assert_eq!((timeout.as_millis(), claim_after.as_secs()), (70, 4));
    let default = text.replace("claim_after_secs = 4\n", "");
    let c = load_str(Path::new("c.toml"), &default).unwrap().config;
    assert!(
        matches!(&c.server.spool.backend, SpoolBackend::Redis(f) if f.claim_after.as_secs() == 15)
    );
    let wrong = format!(
        "[spool]\nbackend = \"disk\"\nclaim_after_secs = 0\n{}",
        named("p", "delivery = \"async\"")
    );
    assert_eq!(
        errors(&wrong),
        [
            "c.toml:2:11: `backend` is `local` or `redis`, not `disk`",
            "c.toml:3:20: `claim_after_secs` must be a positive integer",
        ]
    );
    let misplaced = text.replace("claim_after_secs = 4", "dir = \"q\"");
    assert_eq!(
        errors(&misplaced),
        ["c.toml:6:7: `dir` applies to `backend = \"local\"`"]
    );
    let local = format!(
        "[spool]\nclaim_after_secs = 3\n{}",
        named("p", "delivery = \"async\"")
    );
    assert_eq!(
        errors(&local),
        ["c.toml:2:20: `claim_after_secs` applies to `backend = \"redis\"`"]
    );
}

#[test]
fn retry_on_a_sync_route_is_a_warning() {
    let text = named("p", "retry = { max_attempts = 3 }");
    let loaded = load_str(Path::new("c.toml"), &text).unwrap();
    assert_eq!(
        loaded.warnings.lines(),
        [
            "c.toml:4:9: warning: `[routes.retry]` only applies to a route with `delivery = \"async\"`"
        ]
    );
}

#[test]
fn every_file_the_config_reads_is_listed_for_the_watch() {
    let text = r#"
[server]
tls_listen = "127.0.0.1:8443"
[[server.tls]]
cert_file = "tls/cert.pem"
key_file = "/etc/tls/key.pem"
[server.state]
redis_url = "file:redis-url"
[[routes]]
name = "a"
path = "/a"
upstream = "https://127.0.0.1:3000/in"
upstream_ca_file = "ca.pem"
require_headers = { "X-Token" = "file:token" }
forward_signature = { scheme = "standard-webhooks", secret = "file:resign" }
[routes.verify]
scheme = "rye"
secrets = ["file:secrets/rye", "env:HOOKGATE_SURELY_UNSET", "literal", "file:secrets/rye"]
"#;
    let (loaded, files) = super::load_str_reading(Path::new("/conf/c.toml"), text);
    assert!(loaded.is_err(), "none of the files exist");
    let want = [
        "/conf/ca.pem",
        "/conf/redis-url",
        "/conf/resign",
        "/conf/secrets/rye",
        "/conf/tls/cert.pem",
        "/conf/token",
        "/etc/tls/key.pem",
    ];
    assert_eq!(files, want.map(PathBuf::from));
}

#[test]
fn packaged_config_is_the_example_with_paths_for_the_system_service() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read_to_string(root.join("conf/hookgate.toml")).unwrap();
    let packaged = std::fs::read_to_string(root.join("packaging/deb/hookgate.toml")).unwrap();
    // Every difference, so that a change to the example is made to both.
    let edits = [
        (
            "# hookgate example config: works as shipped (`cargo run --release -- run`).\n",
            "# hookgate config, installed by the hookgate package as /etc/hookgate/hookgate.toml:\n\
             # the example of the source tree, its paths set for the system service.\n",
        ),
        (
            "`hookgate check --config conf/hookgate.toml`; a running gateway reloads this\n\
             # file on save, on SIGHUP and on",
            "`hookgate check --config /etc/hookgate/hookgate.toml`; a running gateway reloads this\n\
             # file on save, on SIGHUP (`systemctl reload hookgate`) and on",
        ),
        ("# [spool]\n", "[spool]\n"),
        (
            "# dir = \"spool\"            # relative to this file's directory\n",
            "dir = \"/var/lib/hookgate/spool\"   # in the unit's StateDirectory \
             (a relative path is relative to this file's directory)\n",
        ),
    ];
    let mut expected = example;
    for (from, to) in edits {
        assert_eq!(expected.matches(from).count(), 1, "{from}");
        expected = expected.replace(from, to);
    }
    assert_eq!(packaged, expected);

    let loaded = load_str(Path::new("/etc/hookgate/hookgate.toml"), &packaged)
        .unwrap_or_else(|r| panic!("{r}"));
    assert!(loaded.warnings.lines().is_empty(), "{}", loaded.warnings);
    assert_eq!(
        loaded.config.server.spool.backend,
        SpoolBackend::Local(PathBuf::from("/var/lib/hookgate/spool"))
    );
    // systemd must wait out the drain before it kills the process.
    let unit = std::fs::read_to_string(root.join("packaging/deb/hookgate.service")).unwrap();
    let stop: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .and_then(|v| v.parse().ok())
        .expect("TimeoutStopSec in seconds");
    assert!(stop > loaded.config.server.shutdown_grace.as_secs());
}
