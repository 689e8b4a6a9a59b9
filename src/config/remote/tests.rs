use std::path::Path;

use crate::config::load_str;
use crate::config::tests::errors;

fn route(verify: &str) -> String {
    format!(
        "[[routes]]\nname = \"a\"\npath = \"/a\"\nupstream = \"http://127.0.0.1:3000\"\n[routes.verify]\n{verify}"
    )
}

#[test]
fn remote_key_routes_load_with_their_keys() {
    let text = [
        route("scheme = \"aws-sns\"\ntopic_arns = [\"arn:aws:sns:us-east-1:1:t\"]\n"),
        route("scheme = \"paypal\"\nwebhook_id = \"WH-1\"\n").replace("\"a\"", "\"b\"").replace("/a", "/b"),
        route("scheme = \"google-pubsub-push\"\naudience = \"https://h/push\"\nemail = \"p@x.iam.gserviceaccount.com\"\n")
            .replace("\"a\"", "\"c\"")
            .replace("/a", "/c"),
        route("scheme = \"azure-event-grid-entra\"\naudience = [\"api://hooks\", \"0000-app\"]\ntenant = \"contoso.onmicrosoft.com\"\n")
            .replace("\"a\"", "\"d\"")
            .replace("/a", "/d"),
    ]
    .concat();
    let config = load_str(Path::new("c.toml"), &text)
        .unwrap_or_else(|r| panic!("{r}"))
        .config;
    let params = |name: &str| {
        let route = config.routes.iter().find(|r| r.name == name).unwrap();
        route.verifiers[0].remote_params().unwrap().clone()
    };
    assert_eq!(params("a").hosts[0].as_str(), "sns.*.amazonaws.com");
    assert_eq!(params("a").expect[0].1, ["arn:aws:sns:us-east-1:1:t"]);
    assert_eq!(params("b").webhook_id.as_deref(), Some("WH-1"));
    assert_eq!(
        params("c").jwks_url.unwrap().to_string(),
        "https://www.googleapis.com/oauth2/v3/certs"
    );
    let azure = params("d");
    assert_eq!(
        azure.jwks_url.unwrap().to_string(),
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/discovery/v2.0/keys"
    );
    assert_eq!(
        azure.issuers,
        [
            "https://sts.windows.net/contoso.onmicrosoft.com/",
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0"
        ]
    );
    assert_eq!(azure.audiences, ["api://hooks", "0000-app"]);
    let keys = &config.remote_keys;
    assert_eq!(
        (keys.timeout.as_millis(), keys.max_bytes, keys.max_entries),
        (5000, 65536, 256)
    );
    assert_eq!(
        (keys.min_ttl.as_secs(), keys.max_ttl.as_secs()),
        (60, 86400)
    );
}

#[test]
fn remote_key_settings_are_checked_with_positions() {
    let text = format!(
        "[server.remote_keys]\nca_file = \"/nonexistent/ca.pem\"\ntimeout_ms = 0\nmin_ttl_secs = 100\nmax_ttl_secs = 50\n{}",
        route("scheme = \"aws-sns\"\n")
    );
    assert_eq!(
        errors(&text),
        [
            "c.toml:2:11: cannot read `/nonexistent/ca.pem`: No such file or directory (os error 2)",
            "c.toml:3:14: `timeout_ms` must be a positive integer",
            "c.toml:4:16: `min_ttl_secs` must not be over `max_ttl_secs`",
        ]
    );
    let huge = format!(
        "[server.remote_keys]\nmax_ttl_secs = 99999999999\n{}",
        route("scheme = \"aws-sns\"\n")
    );
    assert_eq!(
        errors(&huge),
        ["c.toml:2:16: `max_ttl_secs` must be at most 31536000 (a year)"]
    );
}

#[test]
fn route_keys_must_fit_the_scheme() {
    let sns = route(
        "scheme = \"aws-sns\"\nsecrets = [\"s\"]\naudience = \"x\"\nkey_hosts = [\"*.com\", \"bad host\"]\n",
    );
    assert_eq!(
        errors(&sns),
        [
            "c.toml:7:11: scheme `aws-sns` verifies with keys the provider publishes; remove `secrets`",
            "c.toml:8:12: `audience` does not apply to scheme `aws-sns`",
            "c.toml:9:13: host pattern `bad host` must be a DNS name (`*` for one label) with an optional :port",
        ]
    );
    assert_eq!(
        errors(&route("scheme = \"paypal\"\ntopic_arns = [\"t\"]\n")),
        [
            "c.toml:6:10: scheme `paypal` needs `webhook_id`, the id the provider gave the webhook",
            "c.toml:7:14: `topic_arns` does not apply to scheme `paypal`",
        ]
    );
    assert_eq!(
        errors(&route(
            "scheme = \"azure-event-grid-entra\"\njwks_url = \"http://login.example/keys\"\n"
        )),
        [
            "c.toml:6:10: scheme `azure-event-grid-entra` needs `tenant`, the directory (tenant) id",
            "c.toml:6:10: scheme `azure-event-grid-entra` needs `audience`, the `aud` its tokens carry",
            "c.toml:7:12: `jwks_url` must be an https:// URL",
        ]
    );
    assert_eq!(
        errors(&route(
            "scheme = \"google-pubsub-push\"\naudience = \"a\"\ntenant = \"t\"\n"
        )),
        ["c.toml:8:10: `tenant` does not apply to scheme `google-pubsub-push`"]
    );
    assert_eq!(
        errors(&route(
            "scheme = \"github\"\nsecrets = [\"s\"]\nwebhook_id = \"w\"\n"
        )),
        ["c.toml:8:14: `webhook_id` applies to remote-key schemes; scheme `github` is not one"]
    );
    assert_eq!(
        errors(&route("scheme = \"github\"\n")),
        ["c.toml:6:10: `secrets` needs at least one secret"]
    );
}

#[test]
fn descriptors_of_remote_key_schemes_are_checked() {
    // The route then names a scheme that did not build.
    let scheme = |body: &str| format!("[schemes.x]\n{body}\n{}", route("scheme = \"x\"\n"));
    let errors = |text: &str| {
        let mut all = errors(text);
        let last = all.pop().unwrap();
        assert!(
            last.ends_with(":10: unknown scheme `x`; `hookgate schemes` lists the built-in ones"),
            "{last}"
        );
        all
    };
    assert_eq!(
        errors(&scheme(
            "algorithm = \"rsa-sha256\"\nsignature = { header = \"S\" }"
        )),
        [
            "c.toml:2:13: algorithm `rsa-sha256` verifies with keys the provider publishes: add `[keys]`"
        ]
    );
    assert_eq!(
        errors(&scheme(
            "algorithm = \"hmac-sha256\"\nsignature = { header = \"S\" }\nkeys = { jwks_url = \"https://k/\", issuers = [\"i\"] }"
        )),
        ["c.toml:4:8: `keys` applies to the rsa-sha1 and rsa-sha256 algorithms"]
    );
    assert_eq!(
        errors(&scheme(
            "algorithm = \"rsa-sha256\"\nsignature = { header = \"S\" }\nkeys = { certificate_url = \"header:U\" }"
        )),
        ["c.toml:4:8: `keys` needs `hosts`: the hosts allowed to serve what the request names"]
    );
    assert_eq!(
        errors(&scheme(
            "algorithm = \"rsa-sha256\"\nsignature = { header = \"S\" }\nkeys = { jwks_url = \"https://k/\", issuers = [\"i\"] }"
        )),
        ["c.toml:3:13: a JWKS verifies JWTs: `jwks_url` and the jwt signature format go together"]
    );
    assert_eq!(
        errors(&scheme(
            "algorithm = \"rsa-sha256\"\nalgorithm_from = { from = \"header:V\", values = { \"1\" = \"hmac-sha1\" } }\nsignature = { header = \"S\" }\nkeys = { certificate_url = \"header:U\", hosts = [\"k.example\"] }"
        )),
        ["c.toml:3:48: `hmac-sha1` and `algorithm` must both use remote keys, or neither"]
    );
}
