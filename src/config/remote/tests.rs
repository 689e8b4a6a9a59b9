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
    assert_eq!(
        params("a").hosts[0].as_str(),
        "sns.{aws-region}.amazonaws.com"
    );
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
        (
            keys.min_ttl.as_secs(),
            keys.max_ttl.as_secs(),
            keys.max_fetches_per_minute.get()
        ),
        (60, 86400, 10)
    );
}

#[test]
fn remote_key_settings_are_checked_with_positions() {
    let text = format!(
        "[server.remote_keys]\nca_file = \"/nonexistent/ca.pem\"\ntimeout_ms = 0\nmin_ttl_secs = 100\nmax_ttl_secs = 50\nmax_fetches_per_minute = 0\n{}",
        route("scheme = \"aws-sns\"\n")
    );
    assert_eq!(
        errors(&text),
        [
            "c.toml:2:11: cannot read `/nonexistent/ca.pem`: No such file or directory (os error 2)",
            "c.toml:3:14: `timeout_ms` must be a positive integer",
            "c.toml:4:16: `min_ttl_secs` must not be over `max_ttl_secs`",
            "c.toml:6:26: `max_fetches_per_minute` must be a positive integer",
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
            "c.toml:9:13: host pattern `bad host` must be a DNS name (`*` for one label, `{aws-region}` or `{aws-cn-region}` for an AWS region) with an optional :port",
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
        ["c.toml:4:8: `keys` applies to the rsa-sha1, rsa-sha256 and es256 algorithms"]
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
    let jwt = "signed = \"{signature:jwt}\"\nbody_sha256 = \"signature:h\"\nsignature = { header = \"S\", format = \"jwt\", encoding = \"base64url\" }";
    assert_eq!(
        errors(&scheme(&format!(
            "algorithm = \"es256\"\n{jwt}\nkeys = {{ key_endpoint = \"https://keys.example/get\" }}"
        ))),
        ["c.toml:6:8: `keys` needs `hosts`: the hosts allowed to serve what the request names"]
    );
    assert_eq!(
        errors(&scheme(&format!(
            "algorithm = \"es256\"\n{jwt}\nkeys = {{ key_endpoint = \"https://keys.example/get\", hosts = [\"other.example\"], issuers = [\"i\"] }}"
        ))),
        [
            "c.toml:6:25: `key_endpoint` must be on one of `hosts`",
            "c.toml:6:90: `issuers` applies to `jwks_url`"
        ]
    );
    assert_eq!(
        errors(&scheme(&format!(
            "algorithm = \"rsa-sha256\"\n{jwt}\nkeys = {{ key_endpoint = \"https://k.example/get\", hosts = [\"k.example\"] }}"
        ))),
        [
            "c.toml:2:13: a key endpoint serves EC P-256 keys: `key_endpoint` and algorithm `es256` go together"
        ]
    );
    assert_eq!(
        errors(&scheme(
            "algorithm = \"es256\"\nbody_sha256 = \"header:H\"\nsignature = { header = \"S\" }\nkeys = { key_endpoint = \"https://k.example/get\", hosts = [\"k.example\"] }"
        )),
        [
            "c.toml:4:13: a key endpoint's keys verify JWTs: `key_endpoint` and the jwt signature format go together"
        ]
    );
    assert_eq!(
        errors(&scheme(&format!(
            "algorithm = \"es256\"\n{jwt}\nkeys = {{ jwks_url = \"https://k.example/get\", issuers = [\"i\"] }}"
        ))),
        [
            "c.toml:2:13: JWTs from a JWKS are verified with rsa-sha256 (RS256)",
            "c.toml:2:13: a key endpoint serves EC P-256 keys: `key_endpoint` and algorithm `es256` go together"
        ]
    );
}

#[test]
fn key_endpoint_routes_take_a_client_id_and_one_secret() {
    let ok = route(
        "scheme = \"plaid\"\nclient_id = \"5f3a\"\nsecrets = [\"plaid-secret\"]\nkey_endpoint = \"https://sandbox.plaid.com/webhook_verification_key/get\"\n",
    );
    let config = load_str(Path::new("c.toml"), &ok)
        .unwrap_or_else(|r| panic!("{r}"))
        .config;
    let verifier = &config.routes.iter().next().unwrap().verifiers[0];
    let params = verifier.remote_params().unwrap();
    let credentials = params.credentials.as_ref().unwrap();
    assert_eq!(credentials.client_id, "5f3a");
    assert_eq!(credentials.secret.expose(), b"plaid-secret");
    assert!(!format!("{params:?}").contains("plaid-secret"));
    assert_eq!(
        params.key_endpoint.as_ref().unwrap().to_string(),
        "https://sandbox.plaid.com/webhook_verification_key/get"
    );
    assert_eq!(verifier.tolerance_secs(), Some(300));
    // The scheme's endpoint when the route names none.
    let production = route("scheme = \"plaid\"\nclient_id = \"c\"\nsecrets = [\"s\"]\n");
    let config = load_str(Path::new("c.toml"), &production).unwrap().config;
    let params = config.routes.iter().next().unwrap().verifiers[0]
        .remote_params()
        .unwrap();
    assert_eq!(
        params.key_endpoint.as_ref().unwrap().to_string(),
        "https://production.plaid.com/webhook_verification_key/get"
    );

    assert_eq!(
        errors(&route("scheme = \"plaid\"\n")),
        [
            "c.toml:6:10: scheme `plaid` needs `client_id`, the API client id its keys are asked with",
            "c.toml:6:10: scheme `plaid` needs `secrets` with one entry: the API secret its keys are asked with",
        ]
    );
    assert_eq!(
        errors(&route(
            "scheme = \"plaid\"\nclient_id = \"has space\"\nsecrets = [\"a\", \"b\"]\nkey_endpoint = \"https://evil.example/webhook_verification_key/get\"\n"
        )),
        [
            "c.toml:7:13: `client_id` must be 1 to 256 printable ASCII characters",
            "c.toml:8:11: scheme `plaid` takes one secret: the API secret its keys are asked with",
            "c.toml:9:16: `key_endpoint` must be an https:// URL on an allowed host (production.plaid.com, sandbox.plaid.com, development.plaid.com); `key_hosts` sets them",
        ]
    );
    assert_eq!(
        errors(&route(
            "scheme = \"plaid\"\nclient_id = \"c\"\nsecrets = [\"env:HOOKGATE_TEST_UNSET_PLAID\"]\nkey_endpoint = \"http://sandbox.plaid.com/webhook_verification_key/get\"\n"
        )),
        [
            "c.toml:8:12: environment variable `HOOKGATE_TEST_UNSET_PLAID` is not set",
            "c.toml:9:16: `key_endpoint` must be an https:// URL on an allowed host (production.plaid.com, sandbox.plaid.com, development.plaid.com); `key_hosts` sets them",
        ]
    );
    // `key_hosts` replaces the allowlist; the keys apply to key-endpoint schemes only.
    let local = route(
        "scheme = \"plaid\"\nclient_id = \"c\"\nsecrets = [\"s\"]\nkey_hosts = [\"127.0.0.1:8443\"]\nkey_endpoint = \"https://127.0.0.1:8443/k\"\n",
    );
    assert!(load_str(Path::new("c.toml"), &local).is_ok());
    assert_eq!(
        errors(&route(
            "scheme = \"paypal\"\nwebhook_id = \"w\"\nclient_id = \"c\"\nkey_endpoint = \"https://api.paypal.com/k\"\n"
        )),
        [
            "c.toml:8:13: `client_id` does not apply to scheme `paypal`",
            "c.toml:9:16: `key_endpoint` does not apply to scheme `paypal`",
        ]
    );
}
