//! The one place that maps refusals to HTTP: every error code of the contract,
//! its status, and the JSON body `{"error": CODE}`. Bodies never echo a
//! signature, a secret or any other request data.

use http::Method;

use crate::handshake::HandshakeError;
use crate::response::LocalResponse;
use crate::verify::Rejection;

/// Seconds an overloaded gateway asks clients to wait (`Retry-After`).
pub const RETRY_AFTER_SECS: u64 = 1;

/// Every error the gateway answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 400: malformed request or unreadable body.
    BadRequest,
    /// 401: no signature (or a field the signature needs).
    MissingSignature,
    /// 401: the signature does not verify.
    InvalidSignature,
    /// 401: the signed timestamp is outside the route's tolerance.
    TimestampOutOfTolerance,
    /// 401: a header the route requires is absent.
    MissingHeader,
    /// 401: a header the route requires has the wrong value.
    InvalidHeader,
    /// 403: the client's address is outside the route's `allow_ips`.
    IpNotAllowed,
    /// 403: a subscription handshake carried the wrong verify token.
    InvalidVerifyToken,
    /// 404: no route for this host and path.
    NoRoute,
    /// 405: the route does not allow this method.
    MethodNotAllowed,
    /// 408: the request header did not arrive within `header_timeout_ms`.
    HeaderTimeout,
    /// 408: the body did not arrive within `read_timeout_ms`.
    BodyTimeout,
    /// 409: another request is delivering the same event.
    DeliveryInProgress,
    /// 413: the body is over the route's `max_body_bytes`.
    PayloadTooLarge,
    /// 429: over the route's rate limit.
    RateLimited,
    /// 431: the request header is over `max_header_bytes`.
    HeadersTooLarge,
    /// 503: admitting the body would pass `max_inflight_body_bytes`.
    Overloaded,
    /// 503: the state store (Redis) failed and the route fails closed.
    StateUnavailable,
    /// 503: an async route's spool is full (`max_bytes`) or cannot store.
    SpoolFull,
    /// 503: the provider's published key (certificate, JWKS) could not be fetched.
    KeyUnavailable,
    /// 502: the gateway could not confirm a subscription (AWS SNS `SubscribeURL`).
    ConfirmationFailed,
    /// 502: the upstream refused the connection or broke it.
    UpstreamUnavailable,
    /// 504: the upstream did not answer within `upstream_timeout_ms`.
    UpstreamTimeout,
}

impl ErrorCode {
    /// The HTTP status.
    pub fn status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::MissingSignature
            | Self::InvalidSignature
            | Self::TimestampOutOfTolerance
            | Self::MissingHeader
            | Self::InvalidHeader => 401,
            Self::IpNotAllowed | Self::InvalidVerifyToken => 403,
            Self::NoRoute => 404,
            Self::MethodNotAllowed => 405,
            Self::HeaderTimeout | Self::BodyTimeout => 408,
            Self::DeliveryInProgress => 409,
            Self::PayloadTooLarge => 413,
            Self::RateLimited => 429,
            Self::HeadersTooLarge => 431,
            Self::Overloaded | Self::StateUnavailable | Self::SpoolFull | Self::KeyUnavailable => {
                503
            }
            Self::UpstreamUnavailable | Self::ConfirmationFailed => 502,
            Self::UpstreamTimeout => 504,
        }
    }

    /// The code in the JSON body.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::MissingSignature => "missing_signature",
            Self::InvalidSignature => "invalid_signature",
            Self::TimestampOutOfTolerance => "timestamp_out_of_tolerance",
            Self::MissingHeader => "missing_header",
            Self::InvalidHeader => "invalid_header",
            Self::IpNotAllowed => "ip_not_allowed",
            Self::InvalidVerifyToken => "invalid_verify_token",
            Self::NoRoute => "no_route",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::HeaderTimeout => "header_timeout",
            Self::BodyTimeout => "body_timeout",
            Self::DeliveryInProgress => "delivery_in_progress",
            Self::PayloadTooLarge => "payload_too_large",
            Self::RateLimited => "rate_limited",
            Self::HeadersTooLarge => "headers_too_large",
            Self::Overloaded => "overloaded",
            Self::StateUnavailable => "state_unavailable",
            Self::SpoolFull => "spool_full",
            Self::KeyUnavailable => "key_unavailable",
            Self::ConfirmationFailed => "confirmation_failed",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::UpstreamTimeout => "upstream_timeout",
        }
    }

    /// The response for this error. An overloaded gateway, one whose state
    /// store failed, one whose spool is full and one that cannot fetch a
    /// provider's key ask the client to come back in [`RETRY_AFTER_SECS`].
    pub fn response(self) -> LocalResponse {
        let mut response = self.bare_response();
        if matches!(
            self,
            Self::Overloaded | Self::StateUnavailable | Self::SpoolFull | Self::KeyUnavailable
        ) {
            response
                .headers
                .push((http::header::RETRY_AFTER, RETRY_AFTER_SECS.to_string()));
        }
        response
    }

    /// The response with `Retry-After: seconds` (429, 409).
    pub fn retry_after(self, seconds: u64) -> LocalResponse {
        let mut response = self.bare_response();
        response
            .headers
            .push((http::header::RETRY_AFTER, seconds.to_string()));
        response
    }

    fn bare_response(self) -> LocalResponse {
        LocalResponse {
            status: self.status(),
            content_type: Some("application/json".to_owned()),
            headers: Vec::new(),
            body: format!(r#"{{"error":"{}"}}"#, self.as_str()).into_bytes(),
        }
    }

    /// A 405 listing the allowed methods in `Allow`.
    pub fn method_not_allowed(allowed: &[Method]) -> LocalResponse {
        let mut response = Self::MethodNotAllowed.response();
        let list: Vec<&str> = allowed.iter().map(Method::as_str).collect();
        response
            .headers
            .push((http::header::ALLOW, list.join(", ")));
        response
    }
}

impl From<Rejection> for ErrorCode {
    fn from(rejection: Rejection) -> Self {
        match rejection {
            Rejection::SignatureMissing | Rejection::SignedHeaderMissing => Self::MissingSignature,
            Rejection::SignatureMalformed
            | Rejection::SignatureMismatch
            | Rejection::BodyMismatch
            | Rejection::BodyNotJson
            | Rejection::KeyUrlRefused
            | Rejection::KeyExpired
            | Rejection::UnknownKey
            | Rejection::ClaimMismatch => Self::InvalidSignature,
            Rejection::KeyUnavailable => Self::KeyUnavailable,
            // A body that means two things is malformed, whatever signed it.
            Rejection::DuplicateKey => Self::BadRequest,
            Rejection::TimestampUnreadable
            | Rejection::TimestampTooOld
            | Rejection::TimestampTooNew => Self::TimestampOutOfTolerance,
        }
    }
}

impl From<&HandshakeError> for ErrorCode {
    fn from(error: &HandshakeError) -> Self {
        match error {
            HandshakeError::MissingField(_)
            | HandshakeError::NotAToken(_)
            | HandshakeError::Unsendable(_)
            | HandshakeError::DuplicateKey => Self::BadRequest,
            HandshakeError::VerifyTokenMismatch => Self::InvalidVerifyToken,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_the_contract_json() {
        let r = ErrorCode::InvalidSignature.response();
        assert_eq!(
            (r.status, r.content_type.as_deref()),
            (401, Some("application/json"))
        );
        assert_eq!(r.body, br#"{"error":"invalid_signature"}"#);
        let v: serde_json::Value =
            serde_json::from_slice(&ErrorCode::UpstreamTimeout.response().body).unwrap();
        assert_eq!(v["error"], "upstream_timeout");
    }

    #[test]
    fn rejections_map_to_their_codes() {
        assert_eq!(
            ErrorCode::from(Rejection::SignedHeaderMissing),
            ErrorCode::MissingSignature
        );
        assert_eq!(
            ErrorCode::from(Rejection::SignatureMalformed),
            ErrorCode::InvalidSignature
        );
        assert_eq!(
            ErrorCode::from(Rejection::BodyMismatch),
            ErrorCode::InvalidSignature
        );
        assert_eq!(
            ErrorCode::from(Rejection::TimestampTooNew),
            ErrorCode::TimestampOutOfTolerance
        );
        assert_eq!(
            ErrorCode::from(Rejection::KeyUrlRefused),
            ErrorCode::InvalidSignature
        );
        let unavailable = ErrorCode::from(Rejection::KeyUnavailable).response();
        assert_eq!(unavailable.status, 503);
        assert_eq!(unavailable.body, br#"{"error":"key_unavailable"}"#);
        assert!(
            unavailable
                .headers
                .iter()
                .any(|(name, _)| name == http::header::RETRY_AFTER)
        );
        let mismatch = ErrorCode::from(&HandshakeError::VerifyTokenMismatch);
        assert_eq!(
            (mismatch.status(), mismatch.as_str()),
            (403, "invalid_verify_token")
        );
    }

    #[test]
    fn method_not_allowed_lists_methods() {
        let r = ErrorCode::method_not_allowed(&[Method::POST, Method::GET]);
        assert_eq!(r.status, 405);
        assert_eq!(r.headers, [(http::header::ALLOW, "POST, GET".to_owned())]);
    }
}
