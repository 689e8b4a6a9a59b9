//! `hookgate check` on the files a newcomer writes: one with no route says
//! that nothing will be served, and a value of the wrong type hides no other
//! problem of the file.

/// `hookgate check` of `text`: exit code, stdout, and the file's path.
fn check(text: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookgate.toml");
    std::fs::write(&path, text).unwrap();
    let (code, out) = crate::check::check(&path);
    (code, out, path.display().to_string())
}

#[test]
fn a_file_without_routes_is_valid_with_a_warning_that_nothing_is_served() {
    for text in ["", "[server]\nlisten = \"127.0.0.1:1\"\n"] {
        let (code, out, p) = check(text);
        assert_eq!(code, 0, "{out}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert_eq!(
            lines[0],
            format!(
                "{p}:1:1: warning: no [[routes]]: nothing will be served (every request gets 404 `no_route`); add a [[routes]] table (conf/hookgate.toml has examples)"
            )
        );
        assert!(
            lines[1].starts_with(&format!("{p}: ok: 0 route(s)")),
            "{out}"
        );
    }
}

#[test]
fn a_type_error_hides_no_other_problem() {
    let text = "\
[server]
max_body_bytes = \"1MB\"
threads = \"two\"

[[routes]]
name = \"a\"
path = \"/a\"
upstream = \"not a url\"
verify = { scheme = \"stripe-ish\", secrets = [\"x\"] }

[[routes]]
name = \"b\"
path = \"/b\"
upstream = \"http://127.0.0.1:9\"
read_timeout_ms = \"10s\"
verify = { scheme = \"rye\", secrets = [\"x\"] }

[[routes]]
name = \"c\"
path = \"/c\"
upstream = \"http://127.0.0.1:9\"
verify = { scheme = \"rye\", secrets = [\"x\"] }
[routes.dedup]
ttl = 600
";
    let (code, out, p) = check(text);
    assert_eq!(code, 1, "{out}");
    let expected = [
        format!("{p}:2:18: invalid type: string \"1MB\", expected i64"),
        format!("{p}:3:11: invalid type: string \"two\", expected i64"),
        format!("{p}:8:12: invalid upstream URL `not a url`: invalid uri character"),
        format!(
            "{p}:9:21: unknown scheme `stripe-ish`; did you mean `stripe`? `hookgate schemes` lists the built-in ones"
        ),
        format!("{p}:15:19: invalid type: string \"10s\", expected i64"),
        format!("{p}:24:1: unknown field `ttl`, expected `ttl_secs`"),
    ];
    assert_eq!(out.lines().collect::<Vec<_>>(), expected);
}
