//! Duplicate JSON members: a signed body that holds a member the scheme reads
//! twice means one thing to the gateway (the last copy) and maybe another to
//! the app (the first), so it is refused before it reaches the upstream.

use serde_json::json;

use crate::support::client::post;
use crate::support::gateway::Gateway;
use crate::support::remote::{self, KeyServer};
use crate::support::route;
use crate::support::upstream::Upstream;

/// A signed SNS notification with an extra `"Message"` placed first used to
/// be verified (over the last copy) and forwarded whole, so an app keeping
/// the first copy read the attacker's text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_sns_message_with_a_second_message_is_refused() {
    let keys = KeyServer::serving(remote::CERT, "public, max-age=3600").await;
    let upstream = Upstream::start().await;
    let verify = format!("scheme = \"aws-sns\"\nkey_hosts = [\"{}\"]\n", keys.host());
    let routes = route("sns", "/sns", &upstream.url(), &verify);
    let gw = Gateway::start_with(&routes, &keys.server_toml()).await;
    let signed = remote::sns_v2(
        "Notification",
        &keys.url("/SimpleNotificationService-test.pem"),
        &json!({"Message": "pay 1 EUR to alice"}),
    );
    let (first, rest) = signed.split_at(1);
    assert_eq!(first, "{");
    let smuggled = format!(r#"{{"Message":"pay 1000 EUR to mallory",{rest}"#);
    let escaped = format!(r#"{{"Mess\u0061ge":"pay 1000 EUR to mallory",{rest}"#);
    // A member read to fetch the key, not to verify: it counts too.
    let cert = format!(r#"{{"SigningCertURL":"https://evil.example/cert.pem",{rest}"#);
    for body in [&smuggled, &escaped, &cert] {
        post(gw.addr, "/sns", &[], body.clone())
            .await
            .assert_error(400, "bad_request");
    }
    upstream.assert_untouched();
    gw.wait_log("route sns: refused: duplicate_json_key", 3)
        .await;

    // The signature itself is good: the message without the extra copy passes.
    assert_eq!(
        post(gw.addr, "/sns", &[], signed.clone()).await.text(),
        "upstream ok"
    );
    assert_eq!(upstream.only_request().body, signed.as_bytes());
}
