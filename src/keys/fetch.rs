//! One HTTPS exchange with a checked URL (hyper over rustls): a GET, or a
//! POST of JSON that may carry credentials (never logged); bounded in time and
//! in body bytes, no redirects, only a 200 is a document.

use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::KeySettings;
use crate::scheme::remote::HttpsUrl;

/// A fetched document.
#[derive(Debug)]
pub struct Fetched {
    /// The body, at most the configured bytes.
    pub body: Bytes,
    /// `Cache-Control: max-age`, in seconds, when the server sent one;
    /// `Some(0)` for `no-store` / `no-cache`.
    pub max_age: Option<u64>,
}

/// Fetches `url` with the settings' TLS roots, within their `timeout`,
/// refusing bodies over their `max_bytes`. The error says what went wrong,
/// for the log.
pub async fn get(settings: &KeySettings, url: &HttpsUrl) -> Result<Fetched, String> {
    send(settings, url, None).await
}

/// POSTs `json` to `url`, as [`get`] fetches. The body may hold credentials:
/// it appears in no error.
pub async fn post_json(
    settings: &KeySettings,
    url: &HttpsUrl,
    json: Vec<u8>,
) -> Result<Fetched, String> {
    send(settings, url, Some(json)).await
}

async fn send(
    settings: &KeySettings,
    url: &HttpsUrl,
    json: Option<Vec<u8>>,
) -> Result<Fetched, String> {
    let exchange = exchange(Arc::clone(&settings.tls), url, json, settings.max_bytes);
    match tokio::time::timeout(settings.timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no answer within {} ms",
            settings.timeout.as_millis()
        )),
    }
}

async fn exchange(
    tls: Arc<rustls::ClientConfig>,
    url: &HttpsUrl,
    json: Option<Vec<u8>>,
    max_bytes: usize,
) -> Result<Fetched, String> {
    let name = ServerName::try_from(url.host.clone()).map_err(|e| format!("bad host: {e}"))?;
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let stream = TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    // The connection task ends with the exchange (or when `get`'s timeout drops it).
    let driver = tokio::spawn(connection);
    let request = match &json {
        None => http::Request::get(url.path_and_query.as_str()),
        Some(_) => http::Request::post(url.path_and_query.as_str())
            .header(http::header::CONTENT_TYPE, "application/json"),
    };
    let request = request
        .header(http::header::HOST, url.authority())
        .header(http::header::USER_AGENT, "hookgate")
        .header(http::header::CONNECTION, "close")
        .body(Full::new(Bytes::from(json.unwrap_or_default())))
        .map_err(|_| "request: cannot build it".to_owned())?;
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("status {}", response.status().as_u16()));
        }
        let declared = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max_bytes as u64) {
            return Err(format!("document over {max_bytes} bytes"));
        }
        let max_age = max_age(response.headers());
        let body = Limited::new(response.into_body(), max_bytes)
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok(Fetched { body, max_age })
    }
    .await;
    driver.abort();
    result
}

/// The lifetime `Cache-Control` gives a response, in seconds.
fn max_age(headers: &http::HeaderMap) -> Option<u64> {
    let mut age = None;
    for value in headers.get_all(http::header::CACHE_CONTROL) {
        let Ok(text) = value.to_str() else { continue };
        for directive in text.split(',').map(str::trim) {
            let lower = directive.to_ascii_lowercase();
            if lower == "no-store" || lower == "no-cache" {
                return Some(0);
            }
            if let Some(secs) = lower.strip_prefix("max-age=") {
                age = secs.trim_matches('"').parse().ok().or(age);
            }
        }
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for v in values {
            map.append(http::header::CACHE_CONTROL, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn cache_control_gives_the_lifetime() {
        assert_eq!(max_age(&headers(&[])), None);
        assert_eq!(
            max_age(&headers(&["public, max-age=19845, must-revalidate"])),
            Some(19845)
        );
        assert_eq!(max_age(&headers(&["Max-Age=\"60\""])), Some(60));
        assert_eq!(max_age(&headers(&["max-age=60", "no-cache"])), Some(0));
        assert_eq!(max_age(&headers(&["max-age=soon"])), None);
        assert_eq!(max_age(&headers(&["max-age=-1"])), None);
    }
}
