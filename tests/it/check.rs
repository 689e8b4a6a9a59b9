use std::process::Command;

/// `hookgate check --config CONFIG`: the exit code and stdout.
pub fn check(config: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["check", "--config"])
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[test]
fn valid_config_prints_a_summary_and_exits_0() {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/hookgate.toml");
    let (code, out) = check(&shipped);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains("ok: 3 route(s) [rye, aryeo, generic], listening on 127.0.0.1:8080"),
        "{out}"
    );
}

#[test]
fn a_config_of_many_routes_names_the_first_three_and_counts_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.toml");
    let routes = crate::support::many_routes(10_000, "http://127.0.0.1:9", "s");
    std::fs::write(
        &path,
        format!("[server]\nlisten = \"127.0.0.1:1\"\n{routes}"),
    )
    .unwrap();
    let (code, out) = check(&path);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        format!(
            "{}: ok: 10000 route(s) [r1, r2, r3, … and 9997 more], listening on 127.0.0.1:1\n",
            path.display()
        )
    );
}

#[test]
fn every_problem_is_printed_with_line_and_column_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let text = "[server]\nlisten = \"nowhere\"\n\n[[routes]]\nname = \"a\"\npath = \"/a\"\nupstream = \"http://127.0.0.1:1\"\n[routes.verify]\nscheme = \"rye\"\nsecrets = [\"env:HOOKGATE_UNSET_FOR_TEST\"]\n\n[[routes]]\nname = \"a\"\npath = \"/a\"\nupstream = \"not a url\"\n[routes.verify]\nscheme = \"stripe-ish\"\nsecrets = [\"x\"]\n";
    std::fs::write(&path, text).unwrap();
    let (code, out) = check(&path);
    assert_eq!(code, 1, "{out}");
    let p = path.display();
    let expected = [
        format!("{p}:2:10: invalid listen address `nowhere`; write IP:PORT, e.g. `127.0.0.1:8080`"),
        format!("{p}:10:12: environment variable `HOOKGATE_UNSET_FOR_TEST` is not set"),
        format!("{p}:13:8: duplicate route name `a`"),
        format!("{p}:14:8: route `a` overlaps route `a`: same host, path and method POST"),
        format!("{p}:15:12: invalid upstream URL `not a url`: invalid uri character"),
        format!(
            "{p}:17:10: unknown scheme `stripe-ish`; did you mean `stripe`? `hookgate schemes` lists the built-in ones"
        ),
    ];
    assert_eq!(out.lines().collect::<Vec<_>>(), expected);
}

#[test]
fn config_path_comes_from_the_environment_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("env.toml");
    std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:1\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .arg("check")
        .env("HOOKGATE_CONFIG", &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    // The summary follows the warning that a file without routes serves nothing.
    assert!(
        stdout
            .lines()
            .last()
            .is_some_and(|l| l.starts_with(&format!("{}: ok: 0 route(s)", path.display()))),
        "{stdout}"
    );
}

#[test]
fn run_refuses_an_invalid_config_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[server]\nthreads = \"many\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!(
            "{}:2:11: invalid type: string \"many\", expected i64",
            path.display()
        )),
        "{stderr}"
    );
}

fn run(config: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookgate.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["run", "--config"])
        .arg(&path)
        .env_remove("HOOKGATE_TEST_UNSET_SECRET")
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn run_refuses_to_start_with_a_secret_it_cannot_resolve() {
    let port = crate::support::gateway::free_port();
    let (code, stderr) = run(&format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[[routes]]\nname = \"r\"\npath = \"/r\"\n\
         upstream = \"http://127.0.0.1:9\"\n[routes.verify]\nscheme = \"rye\"\n\
         secrets = [\"env:HOOKGATE_TEST_UNSET_SECRET\"]\n"
    ));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("HOOKGATE_TEST_UNSET_SECRET") && stderr.contains("not starting"),
        "{stderr}"
    );
}

#[test]
fn run_refuses_to_start_when_a_listener_cannot_bind() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let free = crate::support::gateway::free_port();
    for (listen, admin) in [(port, free), (free, port)] {
        let (code, stderr) = run(&format!(
            "[server]\nlisten = \"127.0.0.1:{listen}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n"
        ));
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.contains("cannot listen on ") && stderr.contains(&format!("127.0.0.1:{port}")),
            "{stderr}"
        );
    }
}
