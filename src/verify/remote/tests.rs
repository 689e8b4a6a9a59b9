use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde_json::json;

use super::*;
use crate::scheme::signature::decode_base64;

const SIGNING_KEY: &str = include_str!("../../../tests/fixtures/remote_keys/signing.key");
const SIGNING_CERT: &[u8] = include_bytes!("../../../tests/fixtures/remote_keys/signing.pem");
const OTHER_CERT: &[u8] = include_bytes!("../../../tests/fixtures/remote_keys/other.pem");
const EXPIRED_CERT: &[u8] = include_bytes!("../../../tests/fixtures/remote_keys/expired.pem");
const SNS_V1: &str = include_str!("../../../tests/fixtures/remote_keys/sns-v1.json");
/// 2024-01-01T00:00:00Z: inside the fixtures' validity (2020..2100).
const NOW: i64 = 1_704_067_200;

fn key_pair() -> RsaKeyPair {
    let der: String = SIGNING_KEY
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    RsaKeyPair::from_pkcs8(&decode_base64(&der).unwrap()).unwrap()
}

fn sns_string(message: &Value) -> Option<Vec<u8>> {
    let body = message.to_string();
    aws_sns_string(&JsonBody::new(body.as_bytes()))
}

#[test]
fn aws_sns_strings_follow_the_documented_field_lists() {
    let mut notification = json!({
        "Type": "Notification", "MessageId": "m1", "TopicArn": "arn:t", "Subject": "S",
        "Message": "line\nbreak", "Timestamp": "2012-05-02T00:54:06.655Z",
        "SignatureVersion": "1", "Signature": "x", "SigningCertURL": "https://x/y.pem",
    });
    let with_subject = "Message\nline\nbreak\nMessageId\nm1\nSubject\nS\nTimestamp\n\
        2012-05-02T00:54:06.655Z\nTopicArn\narn:t\nType\nNotification\n";
    assert_eq!(sns_string(&notification).unwrap(), with_subject.as_bytes());
    notification.as_object_mut().unwrap().remove("Subject");
    let without = with_subject.replace("Subject\nS\n", "");
    assert_eq!(sns_string(&notification).unwrap(), without.as_bytes());
    notification["Subject"] = Value::Null;
    assert_eq!(sns_string(&notification).unwrap(), without.as_bytes());

    let confirmation = json!({
        "Type": "SubscriptionConfirmation", "MessageId": "m2", "Token": "tok",
        "TopicArn": "arn:t", "Message": "You have chosen…", "Timestamp": "t",
        "SubscribeURL": "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription",
    });
    let expected = "Message\nYou have chosen…\nMessageId\nm2\nSubscribeURL\n\
        https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription\nTimestamp\nt\n\
        Token\ntok\nTopicArn\narn:t\nType\nSubscriptionConfirmation\n";
    assert_eq!(sns_string(&confirmation).unwrap(), expected.as_bytes());
    let mut unsubscribe = confirmation.clone();
    unsubscribe["Type"] = json!("UnsubscribeConfirmation");
    assert!(sns_string(&unsubscribe).is_some());

    let mut no_token = confirmation;
    no_token.as_object_mut().unwrap().remove("Token");
    assert_eq!(sns_string(&no_token), None);
    assert_eq!(sns_string(&json!({"Type": "Other", "Message": "m"})), None);
    assert_eq!(aws_sns_string(&JsonBody::new(b"not json")), None);
}

#[test]
fn sns_v1_fixtures_verify_with_their_certificate_only() {
    let keys = PublicKeys::from_certificate_pem(SIGNING_CERT).unwrap();
    let other = PublicKeys::from_certificate_pem(OTHER_CERT).unwrap();
    let expired = PublicKeys::from_certificate_pem(EXPIRED_CERT).unwrap();
    let params = RemoteParams::default();
    let messages: Vec<Value> = serde_json::from_str(SNS_V1).unwrap();
    for message in messages {
        let signed = sns_string(&message).unwrap();
        let sig = vec![decode_base64(message["Signature"].as_str().unwrap()).unwrap()];
        let check =
            |keys: &PublicKeys, alg, msg: &[u8]| check(alg, keys, msg, &sig, None, &params, NOW);
        assert_eq!(check(&keys, Algorithm::RsaSha1, &signed), Ok(()));
        assert_eq!(
            check(&keys, Algorithm::RsaSha256, &signed),
            Err(Rejection::SignatureMismatch)
        );
        let mut tampered = signed.clone();
        tampered[8] ^= 1;
        assert_eq!(
            check(&keys, Algorithm::RsaSha1, &tampered),
            Err(Rejection::SignatureMismatch)
        );
        assert_eq!(
            check(&other, Algorithm::RsaSha1, &signed),
            Err(Rejection::SignatureMismatch)
        );
        assert_eq!(
            check(&expired, Algorithm::RsaSha1, &signed),
            Err(Rejection::KeyExpired)
        );
    }
    assert_eq!(keys.not_after(), Some(4_102_444_800));
}

#[test]
fn malformed_documents_are_errors() {
    for bad in [
        &b""[..],
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        b"{}",
    ] {
        assert!(PublicKeys::from_certificate_pem(bad).is_err());
        assert!(PublicKeys::from_jwks(bad).is_err());
    }
    let no_rsa = json!({"keys": [{"kty": "EC", "kid": "a", "crv": "P-256", "x": "AA", "y": "AA"}]});
    assert!(PublicKeys::from_jwks(no_rsa.to_string().as_bytes()).is_err());
    assert!(PublicKeys::parse(Document::Jwks, SIGNING_CERT).is_err());
}

/// A JWKS holding the signing key as `kid`.
fn jwks(kid: &str) -> PublicKeys {
    let pair = key_pair();
    let public = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
    let b64 = |bytes: &[u8]| Encoding::Base64Url.encode(bytes);
    let doc = json!({"keys": [
        {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
        {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
         "n": b64(&public.n),
         "e": b64(&public.e)},
    ]});
    PublicKeys::from_jwks(doc.to_string().as_bytes()).unwrap()
}

/// A token signed with the signing key: its signed part and signature.
fn token(header: &Value, claims: &Value) -> (String, Vec<u8>) {
    let b64 = |v: &Value| Encoding::Base64Url.encode(v.to_string().as_bytes());
    let input = format!("{}.{}", b64(header), b64(claims));
    let mut sig = vec![0; key_pair().public().modulus_len()];
    key_pair()
        .sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            input.as_bytes(),
            &mut sig,
        )
        .unwrap();
    (input, sig)
}

fn google() -> RemoteParams {
    RemoteParams {
        audiences: vec!["https://hooks.example.com/push".into()],
        issuers: vec![
            "https://accounts.google.com".into(),
            "accounts.google.com".into(),
        ],
        ..RemoteParams::default()
    }
}

fn claims() -> Value {
    json!({
        "iss": "https://accounts.google.com", "aud": "https://hooks.example.com/push",
        "iat": NOW - 10, "exp": NOW + 3590, "sub": "1", "email": "push@p.iam.gserviceaccount.com",
        "email_verified": true,
    })
}

fn check_jwt(
    header: &Value,
    claims: &Value,
    params: &RemoteParams,
    now: i64,
) -> Result<(), Rejection> {
    let (input, sig) = token(header, claims);
    check(
        Algorithm::RsaSha256,
        &jwks("k1"),
        input.as_bytes(),
        &[sig],
        Some(&input),
        params,
        now,
    )
}

#[test]
fn jwts_verify_against_the_jwks_and_the_route_claims() {
    let header = json!({"alg": "RS256", "kid": "k1", "typ": "JWT"});
    assert_eq!(check_jwt(&header, &claims(), &google(), NOW), Ok(()));
    // No kid: every key is tried.
    assert_eq!(
        check_jwt(&json!({"alg": "RS256"}), &claims(), &google(), NOW),
        Ok(())
    );
    let mut audiences = claims();
    audiences["aud"] = json!(["other", "https://hooks.example.com/push"]);
    assert_eq!(check_jwt(&header, &audiences, &google(), NOW), Ok(()));

    let with = |name: &str, value: Value| {
        let mut c = claims();
        c[name] = value;
        check_jwt(&header, &c, &google(), NOW)
    };
    assert_eq!(
        with("aud", json!("https://other")),
        Err(Rejection::ClaimMismatch)
    );
    assert_eq!(
        with("aud", json!(["https://other"])),
        Err(Rejection::ClaimMismatch)
    );
    assert_eq!(
        with("iss", json!("https://evil.example")),
        Err(Rejection::ClaimMismatch)
    );
    assert_eq!(
        with("exp", json!(NOW - JWT_LEEWAY_SECS - 1)),
        Err(Rejection::TimestampTooOld)
    );
    assert_eq!(with("exp", json!(NOW - JWT_LEEWAY_SECS)), Ok(()));
    assert_eq!(
        with("exp", json!("soon")),
        Err(Rejection::TimestampUnreadable)
    );
    assert_eq!(
        with("nbf", json!(NOW + JWT_LEEWAY_SECS + 1)),
        Err(Rejection::TimestampTooNew)
    );
    assert_eq!(
        with("iat", json!(NOW + 3600)),
        Err(Rejection::TimestampTooNew)
    );

    let unknown = json!({"alg": "RS256", "kid": "k2"});
    assert_eq!(
        check_jwt(&unknown, &claims(), &google(), NOW),
        Err(Rejection::UnknownKey)
    );
    for alg in ["HS256", "none", "RS512", "ES256"] {
        let header = json!({"alg": alg, "kid": "k1"});
        assert_eq!(
            check_jwt(&header, &claims(), &google(), NOW),
            Err(Rejection::SignatureMalformed),
            "{alg}"
        );
    }
    // A signature over other claims does not carry these.
    let (input, _) = token(&header, &claims());
    let (_, other_sig) = token(&header, &json!({"iss": "x"}));
    let keys = jwks("k1");
    let checked = check(
        Algorithm::RsaSha256,
        &keys,
        input.as_bytes(),
        &[other_sig],
        Some(&input),
        &google(),
        NOW,
    );
    assert_eq!(checked, Err(Rejection::SignatureMismatch));
}

#[test]
fn a_required_email_must_be_verified() {
    let header = json!({"alg": "RS256", "kid": "k1"});
    let params = RemoteParams {
        email: Some("push@p.iam.gserviceaccount.com".into()),
        ..google()
    };
    assert_eq!(check_jwt(&header, &claims(), &params, NOW), Ok(()));
    let mut unverified = claims();
    unverified["email_verified"] = json!(false);
    assert_eq!(
        check_jwt(&header, &unverified, &params, NOW),
        Err(Rejection::ClaimMismatch)
    );
    let mut other = claims();
    other["email"] = json!("someone@else.com");
    assert_eq!(
        check_jwt(&header, &other, &params, NOW),
        Err(Rejection::ClaimMismatch)
    );
}

#[test]
fn jwt_kids_are_read_from_the_header() {
    let header = Encoding::Base64Url.encode(br#"{"alg":"RS256","kid":"abc"}"#);
    assert_eq!(jwt_kid(&header).as_deref(), Some("abc"));
    assert_eq!(jwt_kid("!!"), None);
    let long = Encoding::Base64Url.encode(json!({"kid": "k".repeat(300)}).to_string().as_bytes());
    assert_eq!(jwt_kid(&long), None);
}

const PLAID_KEY: &str = include_str!("../../../tests/fixtures/remote_keys/plaid-signing.key");

fn ec_key_pair_for(
    alg: &'static ring::signature::EcdsaSigningAlgorithm,
) -> ring::signature::EcdsaKeyPair {
    let der: String = PLAID_KEY
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    ring::signature::EcdsaKeyPair::from_pkcs8(
        alg,
        &decode_base64(&der).unwrap(),
        &SystemRandom::new(),
    )
    .unwrap()
}

fn ec_key_pair() -> ring::signature::EcdsaKeyPair {
    ec_key_pair_for(&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING)
}

/// A key endpoint's answer publishing the fixture P-256 key as `kid`.
fn key_answer(kid: &str, expired_at: Option<i64>) -> Value {
    use ring::signature::KeyPair as _;
    let pair = ec_key_pair();
    let point = pair.public_key().as_ref();
    json!({"key": {
        "alg": "ES256", "crv": "P-256", "kid": kid, "kty": "EC", "use": "sig",
        "x": Encoding::Base64Url.encode(&point[1..33]),
        "y": Encoding::Base64Url.encode(&point[33..]),
        "created_at": 1_560_466_150, "expired_at": expired_at,
    }, "request_id": "RZ6Omi1bzzwDaLo"})
}

fn es256_token(header: &Value, claims: &Value) -> (String, Vec<u8>) {
    let b64 = |v: &Value| Encoding::Base64Url.encode(v.to_string().as_bytes());
    let input = format!("{}.{}", b64(header), b64(claims));
    let sig = ec_key_pair()
        .sign(&SystemRandom::new(), input.as_bytes())
        .unwrap();
    (input, sig.as_ref().to_vec())
}

fn plaid_params() -> RemoteParams {
    RemoteParams {
        claims: JwtClaims::Scheme,
        ..RemoteParams::default()
    }
}

fn check_es256(header: &Value, keys: &PublicKeys, now: i64) -> Result<(), Rejection> {
    let claims = json!({"iat": NOW, "request_body_sha256": "ab"});
    let (input, sig) = es256_token(header, &claims);
    check(
        Algorithm::Es256,
        keys,
        input.as_bytes(),
        &[sig],
        Some(&input),
        &plaid_params(),
        now,
    )
}

#[test]
fn es256_jwts_verify_with_a_key_endpoints_jwk() {
    let answer = key_answer("k1", None).to_string();
    let keys = PublicKeys::parse(Document::Jwk, answer.as_bytes()).unwrap();
    assert!(keys.has_kid("k1"));
    assert_eq!(keys.not_after(), None);
    let header = json!({"alg": "ES256", "kid": "k1", "typ": "JWT"});
    // No OIDC claims are required: the scheme checks `iat` and the body hash.
    assert_eq!(check_es256(&header, &keys, NOW), Ok(()));
    assert_eq!(
        check_es256(&json!({"alg": "ES256", "kid": "k2"}), &keys, NOW),
        Err(Rejection::UnknownKey)
    );
    for alg in ["RS256", "HS256", "none", "ES384"] {
        assert_eq!(
            check_es256(&json!({"alg": alg, "kid": "k1"}), &keys, NOW),
            Err(Rejection::SignatureMalformed),
            "{alg}"
        );
    }
    // A signature over other claims, a DER signature, or zeros does not verify.
    let (input, _) = es256_token(&header, &json!({"iat": NOW}));
    let (_, other) = es256_token(&header, &json!({"iat": NOW + 1}));
    let der = ec_key_pair_for(&ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING)
        .sign(&SystemRandom::new(), input.as_bytes())
        .unwrap();
    for sig in [other, der.as_ref().to_vec(), vec![0; 64], Vec::new()] {
        let checked = check(
            Algorithm::Es256,
            &keys,
            input.as_bytes(),
            &[sig],
            Some(&input),
            &plaid_params(),
            NOW,
        );
        assert_eq!(checked, Err(Rejection::SignatureMismatch));
    }
    // An RSA key never verifies ES256, nor an EC key RS256.
    assert_eq!(
        check_es256(&header, &jwks("k1"), NOW),
        Err(Rejection::SignatureMismatch)
    );
    let (input, sig) = token(&json!({"alg": "RS256", "kid": "k1"}), &claims());
    let rs256 = check(
        Algorithm::RsaSha256,
        &keys,
        input.as_bytes(),
        &[sig],
        Some(&input),
        &google(),
        NOW,
    );
    assert_eq!(rs256, Err(Rejection::SignatureMismatch));
}

#[test]
fn a_key_with_an_expired_at_serves_until_then() {
    let answer = key_answer("k1", Some(NOW + 60)).to_string();
    let keys = PublicKeys::from_key_answer(answer.as_bytes()).unwrap();
    assert_eq!(keys.not_after(), Some(NOW + 59));
    let header = json!({"alg": "ES256", "kid": "k1"});
    assert_eq!(check_es256(&header, &keys, NOW + 59), Ok(()));
    assert_eq!(
        check_es256(&header, &keys, NOW + 60),
        Err(Rejection::KeyExpired)
    );
}

#[test]
fn key_answers_must_hold_one_p256_signing_key() {
    let with = |name: &str, value: Value| {
        let mut answer = key_answer("k1", None);
        answer["key"][name] = value;
        PublicKeys::from_key_answer(answer.to_string().as_bytes())
    };
    assert!(with("use", json!("sig")).is_ok());
    for (name, value) in [
        ("kty", json!("RSA")),
        ("crv", json!("P-384")),
        ("use", json!("enc")),
        ("alg", json!("RS256")),
        ("x", json!("AA")),
        ("y", json!(null)),
        ("x", json!("!!")),
        ("expired_at", json!("soon")),
    ] {
        assert!(with(name, value.clone()).is_err(), "{name} = {value}");
    }
    for bad in [
        &b"not json"[..],
        b"{}",
        b"{\"key\": \"k\"}",
        b"[]",
        SIGNING_CERT,
    ] {
        assert!(PublicKeys::from_key_answer(bad).is_err());
    }
}

/// Plaid's scheme end to end in the core: the `kid` to fetch, then the
/// signature, the body hash and the `iat` window.
#[test]
fn plaid_jwts_bind_the_body_and_a_recent_time() {
    use crate::verify::request::{SignedRequest, UrlParts};
    use crate::verify::{KeyNeed, Verifier};
    use sha2::Digest as _;

    let scheme = crate::scheme::presets::get("plaid").unwrap();
    let credentials = Arc::new(Credentials {
        client_id: "client".into(),
        secret: Secret::new(b"secret".to_vec()),
    });
    let endpoint = HttpsUrl::parse("https://sandbox.plaid.com/webhook_verification_key/get");
    let params = RemoteParams {
        key_endpoint: endpoint.clone(),
        credentials: Some(Arc::clone(&credentials)),
        ..plaid_params()
    };
    let verifier = Verifier::remote(scheme, params, None);
    let body = br#"{"webhook_type":"TRANSACTIONS","webhook_code":"SYNC_UPDATES_AVAILABLE"}"#;
    let jwt = |claims: &Value| {
        let (input, sig) = es256_token(&json!({"alg": "ES256", "kid": "k1", "typ": "JWT"}), claims);
        format!("{input}.{}", Encoding::Base64Url.encode(&sig))
    };
    let hash = hex::encode(sha2::Sha256::digest(body));
    let good = jwt(&json!({"iat": NOW - 10, "request_body_sha256": hash}));
    let keys = RemoteKeys::Ready(Arc::new(
        PublicKeys::from_key_answer(key_answer("k1", None).to_string().as_bytes()).unwrap(),
    ));
    let url = UrlParts {
        public_url: None,
        remainder: "",
        host: "gw",
    };
    let verify = |token: &str, body: &[u8], now: i64| {
        let headers = crate::verify::tests::headers(&[("Plaid-Verification", token)]);
        let req = SignedRequest::new("POST", ("/plaid", None), &headers, body, url);
        (
            verifier.key_need(&req, now),
            verifier.verify_with_keys(&req, now, &keys),
        )
    };
    let (need, verdict) = verify(&good, body, NOW);
    assert_eq!(
        need,
        KeyNeed::Jwk {
            url: endpoint.unwrap(),
            kid: "k1".into(),
            credentials,
        }
    );
    let verified = verdict.unwrap();
    assert_eq!(verified.event_type(), Some("SYNC_UPDATES_AVAILABLE"));
    assert_eq!(verified.timestamp(), Some(NOW - 10));

    let other = br#"{"webhook_type":"TRANSACTIONS","webhook_code":"DEFAULT_UPDATE"}"#;
    assert_eq!(
        verify(&good, other, NOW).1.unwrap_err(),
        Rejection::BodyMismatch
    );
    assert_eq!(
        verify(&good, b"", NOW).1.unwrap_err(),
        Rejection::BodyMismatch
    );
    assert_eq!(
        verify(&good, body, NOW + 291).1.unwrap_err(),
        Rejection::TimestampTooOld
    );
    assert!(verify(&good, body, NOW + 290).1.is_ok());
    let no_iat = jwt(&json!({"request_body_sha256": hash}));
    assert_eq!(
        verify(&no_iat, body, NOW).1.unwrap_err(),
        Rejection::TimestampUnreadable
    );
    let no_hash = jwt(&json!({"iat": NOW}));
    for body in [&b""[..], b"a=1", body] {
        assert_eq!(
            verify(&no_hash, body, NOW).1.unwrap_err(),
            Rejection::BodyMismatch
        );
    }
    let upper = jwt(&json!({"iat": NOW, "request_body_sha256": hash.to_uppercase()}));
    assert!(verify(&upper, body, NOW).1.is_ok());
    let garbled = jwt(&json!({"iat": NOW, "request_body_sha256": "zz"}));
    assert_eq!(
        verify(&garbled, body, NOW).1.unwrap_err(),
        Rejection::BodyMismatch
    );
    // Every check that needs no key comes before the fetch: a token that
    // fails one is refused without it.
    let refused = |token: &str, body: &[u8], now: i64| verify(token, body, now).0;
    assert_eq!(
        refused(&good, other, NOW),
        KeyNeed::Refused(Rejection::BodyMismatch)
    );
    assert_eq!(
        refused(&good, body, NOW + 291),
        KeyNeed::Refused(Rejection::TimestampTooOld)
    );
    assert_eq!(
        refused(&no_iat, body, NOW),
        KeyNeed::Refused(Rejection::TimestampUnreadable)
    );
    let rs256 = {
        let (input, sig) = token(
            &json!({"alg": "RS256", "kid": "k1"}),
            &json!({"iat": NOW, "request_body_sha256": hash}),
        );
        format!("{input}.{}", Encoding::Base64Url.encode(&sig))
    };
    assert_eq!(
        refused(&rs256, body, NOW),
        KeyNeed::Refused(Rejection::SignatureMalformed)
    );
    // A token naming no key needs no fetch and is refused.
    let claims = json!({"iat": NOW, "request_body_sha256": hash});
    let (input, sig) = es256_token(&json!({"alg": "ES256"}), &claims);
    let kidless = format!("{input}.{}", Encoding::Base64Url.encode(&sig));
    assert_eq!(verify(&kidless, body, NOW).0, KeyNeed::None);
    let headers = crate::verify::tests::headers(&[("Plaid-Verification", &kidless)]);
    let req = SignedRequest::new("POST", ("/plaid", None), &headers, body, url);
    assert_eq!(
        verifier
            .verify_with_keys(&req, NOW, &RemoteKeys::None)
            .unwrap_err(),
        Rejection::SignedHeaderMissing
    );
}

/// An OIDC token (`google-pubsub-push`) whose issuer, audience or times do not
/// fit is refused before the JWKS is fetched, as a message of a topic the
/// route does not take is before its certificate is (`aws-sns`).
#[test]
fn claims_readable_before_the_key_refuse_without_a_fetch() {
    use crate::verify::request::{SignedRequest, UrlParts};
    use crate::verify::{KeyNeed, Verifier};

    let url = UrlParts {
        public_url: None,
        remainder: "",
        host: "gw",
    };
    let jwks_url = HttpsUrl::parse("https://www.googleapis.com/oauth2/v3/certs").unwrap();
    let pubsub = Verifier::remote(
        crate::scheme::presets::get("google-pubsub-push").unwrap(),
        RemoteParams {
            jwks_url: Some(jwks_url.clone()),
            ..google()
        },
        None,
    );
    let need = |claims: &Value| {
        let (input, sig) = token(&json!({"alg": "RS256", "kid": "k1"}), claims);
        let bearer = format!("Bearer {input}.{}", Encoding::Base64Url.encode(&sig));
        let headers = crate::verify::tests::headers(&[("Authorization", &bearer)]);
        let req = SignedRequest::new("POST", ("/push", None), &headers, b"{}", url);
        pubsub.key_need(&req, NOW)
    };
    assert_eq!(
        need(&claims()),
        KeyNeed::Fetch(jwks_url, Document::Jwks, Some("k1".into()))
    );
    let mut cases = Vec::new();
    for (name, value) in [
        ("iss", json!("https://evil.example")),
        ("aud", json!("https://other.example")),
        ("exp", json!(NOW - 3600)),
        ("nbf", json!(NOW + 3600)),
    ] {
        let mut claims = claims();
        claims[name] = value;
        cases.push((name, need(&claims)));
    }
    assert_eq!(
        cases,
        [
            ("iss", KeyNeed::Refused(Rejection::ClaimMismatch)),
            ("aud", KeyNeed::Refused(Rejection::ClaimMismatch)),
            ("exp", KeyNeed::Refused(Rejection::TimestampTooOld)),
            ("nbf", KeyNeed::Refused(Rejection::TimestampTooNew)),
        ]
    );

    let topic = "arn:aws:sns:us-west-2:123456789012:MyTopic";
    let sns = Verifier::remote(
        crate::scheme::presets::get("aws-sns").unwrap(),
        RemoteParams {
            hosts: vec![HostPattern::parse("sns.{aws-region}.amazonaws.com").unwrap()],
            expect: vec![(Source::parse("json:/TopicArn").unwrap(), vec![topic.into()])],
            ..RemoteParams::default()
        },
        Some(300),
    );
    let message = |fields: &Value| {
        let mut m = json!({
            "Type": "Notification", "MessageId": "m1", "TopicArn": topic, "Message": "hi",
            "Timestamp": "2024-01-01T00:00:00Z", "SignatureVersion": "2", "Signature": "AAAA",
            "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-a.pem",
        });
        for (k, v) in fields.as_object().unwrap() {
            m[k] = v.clone();
        }
        m.to_string()
    };
    let need = |body: &str| {
        let headers = crate::verify::tests::headers(&[]);
        let req = SignedRequest::new("POST", ("/sns", None), &headers, body.as_bytes(), url);
        sns.key_need(&req, NOW)
    };
    assert!(matches!(need(&message(&json!({}))), KeyNeed::Fetch(..)));
    for (fields, rejection) in [
        (
            json!({"TopicArn": "arn:aws:sns:us-west-2:666:Other"}),
            Rejection::ClaimMismatch,
        ),
        (
            json!({"Timestamp": "2023-01-01T00:00:00Z"}),
            Rejection::TimestampTooOld,
        ),
        (
            json!({"SignatureVersion": "3"}),
            Rejection::SignatureMalformed,
        ),
        (json!({"Type": "Other"}), Rejection::SignedHeaderMissing),
        (
            json!({"SigningCertURL": "https://sns.s3.amazonaws.com/SimpleNotificationService-a.pem"}),
            Rejection::KeyUrlRefused,
        ),
        (
            json!({"SigningCertURL": "https://sns.us-east-1.amazonaws.com/x/%2e%2e/SimpleNotificationService-a.pem"}),
            Rejection::KeyUrlRefused,
        ),
    ] {
        assert_eq!(
            need(&message(&fields)),
            KeyNeed::Refused(rejection),
            "{fields}"
        );
    }
}
