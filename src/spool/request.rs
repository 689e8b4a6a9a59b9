//! A queued request as stored: the parts that rebuild the upstream request at
//! each attempt (method, the client's path, the part of it past the route's
//! prefix, query, the forwarded header lines without `Host`, the exact body),
//! so that the route's upstream is taken from the config running then.

use bytes::{BufMut, Bytes, BytesMut};

use std::time::{SystemTime, UNIX_EPOCH};

use crate::headers::{self, InvalidTarget, Resign};
use crate::routes::Route;

/// First bytes of an encoded request: the format's version. Then each field
/// as its length (8 bytes, little-endian) and its bytes; the query after a
/// byte saying whether there is one.
const MAGIC: &[u8; 4] = b"hgq2";

/// A queued request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRequest {
    /// The method.
    pub method: String,
    /// The path the client asked for.
    pub path: String,
    /// What of it is past the route's path rule.
    pub remainder: String,
    /// The client's query, if any.
    pub query: Option<String>,
    /// Header lines as [`headers::write_forwarded_headers`] wrote them.
    pub headers: Vec<u8>,
    /// The exact body.
    pub body: Bytes,
}

impl StoredRequest {
    /// The bytes kept in the store.
    pub fn encode(&self) -> Vec<u8> {
        let query = self.query.as_deref();
        let mut out = Vec::with_capacity(
            64 + self.method.len()
                + self.path.len()
                + self.remainder.len()
                + query.map_or(0, str::len)
                + self.headers.len()
                + self.body.len(),
        );
        out.extend_from_slice(MAGIC);
        for field in [
            self.method.as_bytes(),
            self.path.as_bytes(),
            self.remainder.as_bytes(),
        ] {
            put_field(&mut out, field);
        }
        match query {
            Some(q) => {
                out.push(1);
                put_field(&mut out, q.as_bytes());
            }
            None => out.push(0),
        }
        put_field(&mut out, &self.headers);
        put_field(&mut out, &self.body);
        out
    }

    /// Reads what [`Self::encode`] wrote; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut rest = bytes.strip_prefix(MAGIC)?;
        let method = text(take_field(&mut rest)?)?;
        let path = text(take_field(&mut rest)?)?;
        let remainder = text(take_field(&mut rest)?)?;
        let (&flag, after) = rest.split_first()?;
        rest = after;
        let query = match flag {
            0 => None,
            1 => Some(text(take_field(&mut rest)?)?),
            _ => return None,
        };
        let headers = take_field(&mut rest)?.to_vec();
        let body = Bytes::copy_from_slice(take_field(&mut rest)?);
        rest.is_empty().then_some(Self {
            method,
            path,
            remainder,
            query,
            headers,
            body,
        })
    }

    /// The upstream request for attempt number `attempt` of delivery
    /// `delivery` (its id as shown, which is the `webhook-id` of an event its
    /// scheme gives no signed id), to `route`'s upstream as it is configured now.
    pub fn to_wire(
        &self,
        route: &Route,
        attempt: u32,
        delivery: &str,
    ) -> Result<Bytes, InvalidTarget> {
        let target =
            route.upstream_path_and_query(&self.path, &self.remainder, self.query.as_deref());
        let mut out = BytesMut::with_capacity(256 + self.headers.len() + self.body.len());
        headers::write_request_line(&self.method, &target, &mut out)?;
        let attempt = itoa::Buffer::new().format(attempt).to_owned();
        let resign = route
            .policy
            .as_ref()
            .and_then(|p| p.forward_signature.as_ref());
        let stored = headers::with_delivery_id(&self.headers, delivery);
        let resigned;
        let block = match resign {
            None => &stored[..],
            Some(f) => {
                let mut block = BytesMut::with_capacity(self.headers.len() + 128);
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                let resign = Resign { key: &f.key, now };
                headers::resign_stored(&stored, resign, &self.body, &mut block);
                resigned = block;
                &resigned[..]
            }
        };
        headers::write_stored_head(
            &route.upstream.authority,
            (headers::ATTEMPT, &attempt),
            block,
            &mut out,
        );
        out.put_slice(&self.body);
        Ok(out.freeze())
    }

    /// The header lines as name and value (values lossily as text).
    pub fn header_lines(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.headers
            .split(|&b| b == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
            .filter(|line| !line.is_empty())
            .filter_map(|line| {
                let colon = line.iter().position(|&b| b == b':')?;
                let name = String::from_utf8_lossy(&line[..colon]).into_owned();
                let value = String::from_utf8_lossy(&line[colon + 1..])
                    .trim()
                    .to_owned();
                Some((name, value))
            })
    }
}

fn put_field(out: &mut Vec<u8>, field: &[u8]) {
    out.put_u64_le(field.len() as u64);
    out.extend_from_slice(field);
}

fn take_field<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, after) = rest.split_first_chunk::<8>()?;
    let len = usize::try_from(u64::from_le_bytes(*len)).ok()?;
    if after.len() < len {
        return None;
    }
    let (field, after) = after.split_at(len);
    *rest = after;
    Some(field)
}

fn text(bytes: &[u8]) -> Option<String> {
    String::from_utf8(bytes.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StoredRequest {
        StoredRequest {
            method: "POST".into(),
            path: "/hooks/a".into(),
            remainder: "a".into(),
            query: Some("x=1".into()),
            headers: b"Content-Type: application/json\r\nContent-Length: 2\r\n".to_vec(),
            body: Bytes::from_static(b"{}"),
        }
    }

    #[test]
    fn round_trips_and_refuses_anything_else() {
        let request = sample();
        let bytes = request.encode();
        assert_eq!(StoredRequest::decode(&bytes), Some(request.clone()));
        let none = StoredRequest {
            query: None,
            ..request
        };
        assert_eq!(StoredRequest::decode(&none.encode()), Some(none));
        // Every truncation, and trailing garbage, is refused without a panic.
        for end in 0..bytes.len() {
            assert_eq!(StoredRequest::decode(&bytes[..end]), None);
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(StoredRequest::decode(&longer), None);
        let mut huge = bytes;
        huge[4..12].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(StoredRequest::decode(&huge), None);
    }

    #[test]
    fn header_lines_split_names_and_values() {
        let lines: Vec<_> = sample().header_lines().collect();
        assert_eq!(
            lines,
            [
                ("Content-Type".to_owned(), "application/json".to_owned()),
                ("Content-Length".to_owned(), "2".to_owned()),
            ]
        );
    }
}
