use crate::support::client::{post, send};
use crate::support::gateway::Gateway;
use crate::support::scheme;
use crate::support::sign;
use crate::support::upstream::Upstream;

const SECRET: &str = "route-secret";

fn routes(upstream: &Upstream) -> String {
    let u = upstream.url();
    let verify = scheme("aryeo", &[SECRET]);
    format!(
        "[[routes]]\nname = \"exact\"\npath = \"/webhooks/rye\"\nupstream = \"{u}/internal/rye\"\n[routes.verify]\n{verify}\n\
         [[routes]]\nname = \"prefix\"\npath_prefix = \"/hooks/\"\nupstream = \"{u}/in/\"\n[routes.verify]\n{verify}\n\
         [[routes]]\nname = \"keep\"\npath_prefix = \"/keep\"\nupstream = \"{u}\"\n[routes.verify]\n{verify}\n\
         [[routes]]\nname = \"hosted\"\npath = \"/webhooks/rye\"\nhost = \"a.example\"\nupstream = \"{u}/hosted\"\n[routes.verify]\n{verify}\n\
         [[routes]]\nname = \"get\"\npath = \"/get\"\nmethods = [\"GET\", \"PUT\"]\nupstream = \"{u}/g\"\n[routes.verify]\n{verify}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_rewritten_and_queries_kept() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&routes(&upstream)).await;
    let (h, v) = sign::aryeo(SECRET, b"{}");
    let cases = [
        (
            "/webhooks/rye?x=1&y=2",
            None,
            "/internal/rye?x=1&y=2",
            "exact",
        ),
        ("/hooks/a/b?q", None, "/in/a/b?q", "prefix"),
        ("/keep/deep/path", None, "/keep/deep/path", "keep"),
        ("/webhooks/rye", Some("A.Example:8080"), "/hosted", "hosted"),
    ];
    for (path, host, want_uri, want_route) in cases {
        let mut headers = vec![(h, v.as_str())];
        if let Some(host) = host {
            headers.push(("host", host));
        }
        let answer = post(gw.addr, path, &headers, "{}").await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.text());
        let got = upstream.requests().pop().unwrap();
        assert_eq!(
            (got.uri.as_str(), got.header("x-webhook-route")),
            (want_uri, want_route),
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_methods_and_dot_segments_are_refused() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&routes(&upstream)).await;
    let (h, v) = sign::aryeo(SECRET, b"{}");
    post(gw.addr, "/nope", &[(h, &v)], "{}")
        .await
        .assert_error(404, "no_route");
    post(gw.addr, "/keepx", &[(h, &v)], "{}")
        .await
        .assert_error(404, "no_route");
    let wrong_method = send(gw.addr, "GET", "/webhooks/rye", &[(h, &v)], "").await;
    wrong_method.assert_error(405, "method_not_allowed");
    assert_eq!(wrong_method.header("allow"), "POST");
    send(gw.addr, "DELETE", "/get", &[(h, &v)], "{}")
        .await
        .assert_error(405, "method_not_allowed");
    post(gw.addr, "/hooks/../admin", &[(h, &v)], "{}")
        .await
        .assert_error(400, "bad_request");
    post(gw.addr, "/hooks/%2e%2e/admin", &[(h, &v)], "{}")
        .await
        .assert_error(400, "bad_request");
    upstream.assert_untouched();

    let put = send(gw.addr, "PUT", "/get", &[(h, &v)], "{}").await;
    assert_eq!(put.status, 200);
    assert_eq!(upstream.only_request().method, "PUT");
}
