//! The offline commands: `check` (validate a config), `sign` (sign a delivery
//! as a provider would) and `schemes` (list the built-in schemes). Each returns
//! its output as text; `main` prints it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use crate::base::secret::SecretRef;
use crate::config;
use crate::scheme::presets::GENERIC;
use crate::scheme::signature::Location;
use crate::scheme::source::Source;
use crate::scheme::{Scheme, Split, presets};
use crate::verify::sign::{Delivery, SignedDelivery, sign};

/// How many routes `check`'s summary names before it says how many more there are.
const NAMED_ROUTES: usize = 3;

/// `hookgate check`: the summary line on success (the first routes by name and
/// the count), every problem otherwise.
pub fn check(path: &Path) -> Result<String, String> {
    match config::load(path) {
        Ok(loaded) => {
            let mut out = String::new();
            for warning in loaded.warnings.lines() {
                let _ = writeln!(out, "{warning}");
            }
            let c = &loaded.config;
            let count = c.routes.len();
            let mut names: Vec<String> = c
                .routes
                .iter()
                .take(NAMED_ROUTES)
                .map(|r| r.name.clone())
                .collect();
            if count > NAMED_ROUTES {
                names.push(format!("… and {} more", count - NAMED_ROUTES));
            }
            let listen: Vec<String> = c.server.listen.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                out,
                "{}: ok: {} route(s) [{}], listening on {}",
                path.display(),
                count,
                names.join(", "),
                listen.join(", ")
            );
            // The process ends next: freeing a config of 100,000 routes route
            // by route would only delay that (by a tenth of its check).
            std::mem::forget(loaded);
            Ok(out)
        }
        Err(report) => Err(format!("{report}\n")),
    }
}

/// The built-in schemes grouped by provider (providers in name order, either
/// case; each provider's schemes in name order).
pub fn schemes_by_provider() -> Vec<(&'static str, Vec<&'static Arc<Scheme>>)> {
    let mut groups: BTreeMap<(String, &str), Vec<&Arc<Scheme>>> = BTreeMap::new();
    for scheme in presets::all().values() {
        let provider = scheme.provider_name();
        groups
            .entry((provider.to_lowercase(), provider))
            .or_default()
            .push(scheme);
    }
    groups
        .into_iter()
        .map(|((_, provider), schemes)| (provider, schemes))
        .collect()
}

/// Whether the gateway confirms a subscription for the scheme (AWS SNS).
fn confirms(scheme: &Scheme) -> bool {
    scheme.remote.as_ref().is_some_and(|r| r.confirm.is_some())
}

fn marker(yes: bool) -> &'static str {
    if yes { "yes" } else { "–" }
}

/// Whether a scheme's event id or type is signed, for the listing: `signed`
/// when a source the signature covers yields it (unsigned ones may follow,
/// for information), `unsigned` when only others do, `–` when it has none.
fn signedness(split: &Split) -> &'static str {
    match (split.signed.is_empty(), split.unsigned.is_empty()) {
        (false, _) => "signed",
        (true, false) => "unsigned",
        (true, true) => "–",
    }
}

/// The scheme table's cell for an event id or type: its signed sources, then the
/// unsigned ones marked as such.
fn sources_cell(split: &Split) -> String {
    let list = |sources: &[Source]| {
        sources
            .iter()
            .map(|s| format!("`{s}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (split.signed.is_empty(), split.unsigned.is_empty()) {
        (false, true) => list(&split.signed),
        (false, false) => format!(
            "{} (unsigned: {})",
            list(&split.signed),
            list(&split.unsigned)
        ),
        (true, false) => format!("unsigned: {}", list(&split.unsigned)),
        (true, true) => "–".to_owned(),
    }
}

/// `hookgate schemes`: the built-in schemes by provider, one line each, with
/// whether their event id and type are signed, whether the gateway answers a
/// handshake and whether keys are fetched.
pub fn schemes() -> String {
    let mut out = format!(
        "{:<22} {:<26} {:<18} {:<42} {:<8} {:<8} {:<9} {:<11} {}\n",
        "PROVIDER",
        "SCHEME",
        "ALGORITHM",
        "SIGNATURE",
        "ID",
        "TYPE",
        "HANDSHAKE",
        "REMOTE KEYS",
        "DOCS"
    );
    let groups = schemes_by_provider();
    for (provider, schemes) in &groups {
        for (i, scheme) in schemes.iter().enumerate() {
            let _ = writeln!(
                out,
                "{:<22} {:<26} {:<18} {:<42} {:<8} {:<8} {:<9} {:<11} {}",
                if i == 0 { provider } else { "" },
                scheme.name,
                scheme.algorithm.as_str(),
                signature_place(scheme),
                signedness(&scheme.ids),
                signedness(&scheme.types),
                marker(!scheme.handshakes.is_empty() || confirms(scheme)),
                marker(scheme.fetches_keys()),
                scheme.docs.as_deref().unwrap_or("")
            );
        }
    }
    let _ = writeln!(out, "\n{}", summary(&groups));
    out
}

/// How many providers have a scheme that `pick` says yes to.
fn providers_with(groups: &[(&str, Vec<&Arc<Scheme>>)], pick: fn(&Scheme) -> bool) -> usize {
    groups
        .iter()
        .filter(|(_, schemes)| schemes.iter().any(|s| pick(s)))
        .count()
}

/// `N schemes from M providers; H providers' handshakes answered; R with remote keys`.
fn summary(groups: &[(&str, Vec<&Arc<Scheme>>)]) -> String {
    let count = |pick| providers_with(groups, pick);
    format!(
        "{} schemes from {} providers; {} providers' handshakes answered by the gateway; {} with remote keys",
        groups.iter().map(|(_, s)| s.len()).sum::<usize>(),
        groups.len(),
        count(|s| !s.handshakes.is_empty() || confirms(s)),
        count(Scheme::fetches_keys),
    )
}

/// The table of built-in schemes in docs/schemes.md, generated from the descriptors.
pub fn schemes_markdown() -> String {
    let mut out = String::from(
        "| provider | scheme | signature | algorithm | signed content | timestamp (default window) | event id | event type | handshake | remote keys |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    let groups = schemes_by_provider();
    for (provider, schemes) in &groups {
        for (i, scheme) in schemes.iter().enumerate() {
            let name = &scheme.name;
            let named = match &scheme.docs {
                Some(docs) => format!("[`{name}`]({docs})"),
                None => format!("`{name}`"),
            };
            let timestamp = match (&scheme.timestamp, scheme.default_tolerance_secs) {
                (Some(ts), Some(window)) => format!("`{}` ({window} s)", ts.source),
                (Some(ts), None) => format!("`{}`", ts.source),
                (None, _) => "–".to_owned(),
            };
            let mut handshakes: Vec<String> = scheme
                .handshakes
                .iter()
                .map(|h| {
                    let method = h.method.as_ref().map_or(String::new(), |m| format!("{m} "));
                    match (&h.when, &h.equals) {
                        (Some(when), Some(value)) => format!("{method}`{when}` = `{value}`"),
                        (Some(when), None) => format!("{method}`{when}`"),
                        (None, _) => format!("any {method}").trim_end().to_owned(),
                    }
                })
                .collect();
            let confirm = scheme.remote.as_ref().and_then(|r| r.confirm.as_ref());
            handshakes.extend(confirm.map(|c| {
                format!(
                    "`{}` = `{}`: the gateway fetches `{}`",
                    c.when, c.equals, c.url
                )
            }));
            let algorithm = match (&scheme.remote, scheme.key) {
                (Some(remote), _) => format!("{} ({})", scheme.algorithm.as_str(), remote.source),
                (None, crate::scheme::KeyFormat::Sha1) => {
                    format!("{} (key: SHA-1 of the secret)", scheme.algorithm.as_str())
                }
                (None, _) => scheme.algorithm.as_str().to_owned(),
            };
            let signed = if scheme.algorithm == crate::scheme::Algorithm::Token {
                "(the secret itself)".to_owned()
            } else {
                // A `|` would end the table cell, even inside a code span.
                let mut signed = format!("`{}`", scheme.signed.to_string().replace('|', "\\|"));
                if scheme.optional_newline {
                    signed.push_str(", with or without a trailing `\\n`");
                }
                if scheme.body_format == crate::scheme::BodyFormat::Json {
                    signed.push_str(" (JSON bodies only)");
                }
                signed
            };
            let _ = writeln!(
                out,
                "| {} | {named} | `{}` | {algorithm} | {signed} | {timestamp} | {} | {} | {} | {} |",
                if i == 0 { provider } else { "" },
                signature_grammar(scheme).replace('|', "\\|"),
                sources_cell(&scheme.ids),
                sources_cell(&scheme.types),
                if handshakes.is_empty() {
                    "–".to_owned()
                } else {
                    handshakes.join("; ")
                },
                marker(scheme.fetches_keys()),
            );
        }
    }
    let _ = writeln!(out, "\n{}.", summary(&groups));
    out
}

/// What the signature field looks like on the wire, e.g. `stripe-signature: t=…,v1=<hex>`.
pub fn signature_grammar(scheme: &Scheme) -> String {
    use crate::scheme::signature::{Encoding, Format};
    let encoded = match scheme.signature.encoding {
        Encoding::Hex => "<hex>",
        Encoding::Base64 => "<base64>",
        Encoding::Base64Url => "<base64url>",
        Encoding::Text => "<secret>",
    };
    let value = match &scheme.signature.format {
        Format::Plain { prefix } => format!("{prefix}{encoded}"),
        Format::KeyValue { separator, key } => {
            let timestamp_field = match scheme.timestamp.as_ref().map(|t| &t.source) {
                Some(Source::Signature(k)) => format!("{k}=…{separator}"),
                _ => String::new(),
            };
            format!("{timestamp_field}{key}={encoded}")
        }
        Format::Versioned { version, .. } => format!("{version},{encoded}"),
        Format::Jwt => format!("<JWT signed {encoded}>"),
        Format::Pairs { separator } => format!("<label>|{encoded}{separator}…"),
    };
    match &scheme.signature.location {
        Location::Json(pointer) => format!("json:{} = {value}", pointer.as_str()),
        Location::Form(name) => format!("form:{name} = {value}"),
        Location::Query(name) => format!("query:{name} = {value}"),
        Location::Headers(_) => format!("{}: {value}", signature_place(scheme)),
    }
}

/// Where a scheme's signature travels, for listings.
pub fn signature_place(scheme: &Scheme) -> String {
    match &scheme.signature.location {
        Location::Headers(names) => match names.as_slice() {
            [one] => one.to_string(),
            [first, rest @ ..] => format!("{first} (or {} more)", rest.len()),
            [] => String::new(),
        },
        Location::Json(pointer) => format!("body {}", Source::Json(pointer.clone())),
        Location::Form(name) => format!("body form:{name}"),
        Location::Query(name) => format!("query:{name}"),
    }
}

/// What `hookgate sign` was asked.
#[derive(Debug, Clone)]
pub struct SignRequest {
    /// A built-in scheme or one of the config's `[schemes.NAME]`.
    pub scheme: Option<String>,
    /// A route of the config whose first verifier's scheme to use.
    pub route: Option<String>,
    /// The config to look schemes and routes up in.
    pub config: Option<std::path::PathBuf>,
    /// The secret (`env:NAME`, `file:PATH` or literal); for Ed25519 and ECDSA
    /// schemes, the private key.
    pub secret: String,
    /// The delivery to sign.
    pub delivery: Delivery,
    /// Print a curl command sending the delivery to this URL.
    pub curl: Option<String>,
    /// The file the body came from, for `--data-binary @FILE`.
    pub body_file: Option<std::path::PathBuf>,
}

/// What `hookgate sign` prints: the delivery (stdout), and which route of
/// which config it took the scheme from, when it did (stderr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The headers (and URL or body) to send, or the curl command.
    pub text: String,
    /// `using the scheme `S` of route `R` in PATH`, when a config gave it.
    pub notice: Option<String>,
}

/// How `hmac`, whose settings live on a route, is signed for.
fn generic_needs_a_route(path: &Path, found: bool) -> String {
    let place = if found {
        format!("no route of {} uses it", path.display())
    } else {
        format!("there is no config at {}", path.display())
    };
    format!(
        "`{GENERIC}` is the generic scheme: its header, algorithm and signed content are set on a route \
         ({place}). Sign with --route NAME (and --config PATH) for a route with `scheme = \"{GENERIC}\"` \
         and its keys: `header` (required), `algorithm`, `encoding`, `prefix`, `payload`, \
         `timestamp_header`, `id_header`"
    )
}

/// The scheme to sign with, and the notice naming the route and config it
/// came from (when it did).
fn scheme_for(request: &SignRequest) -> Result<(Arc<Scheme>, Option<String>), String> {
    let path = config::resolve_path(request.config.clone());
    let config = || config::load(&path).map_err(|report| format!("{report}"));
    let notice = |route: &str, scheme: &Scheme| {
        format!(
            "using the scheme `{}` of route `{route}` in {}",
            scheme.name,
            path.display()
        )
    };
    if let Some(route) = &request.route {
        let loaded = config()?;
        let found = loaded
            .config
            .routes
            .iter()
            .find(|r| r.name == *route)
            .cloned();
        let route = found.ok_or_else(|| format!("no route `{route}` in {}", path.display()))?;
        let scheme = route
            .verifiers
            .first()
            .map(|v| Arc::new(v.scheme().clone()))
            .ok_or("the route has no verifier")?;
        let notice = notice(&route.name, &scheme);
        return Ok((scheme, Some(notice)));
    }
    let name = request
        .scheme
        .as_deref()
        .ok_or("give --scheme NAME or --route NAME")?;
    if let Some(scheme) = presets::get(name) {
        return Ok((scheme, None));
    }
    if request.config.is_none() && !path.exists() {
        return Err(if name == GENERIC {
            generic_needs_a_route(&path, false)
        } else {
            format!("unknown scheme `{name}`; `hookgate schemes` lists the built-in ones")
        });
    }
    let loaded = config()?;
    let mut using = loaded.config.routes.iter().flat_map(|r| {
        r.verifiers
            .iter()
            .filter(|v| v.scheme().name == name)
            .map(move |v| (r.name.as_str(), v.scheme()))
    });
    match (using.next(), using.next()) {
        (Some(_), Some(_)) if name == GENERIC => {
            let routes: Vec<&str> = loaded
                .config
                .routes
                .iter()
                .filter(|r| r.verifiers.iter().any(|v| v.scheme().name == name))
                .map(|r| r.name.as_str())
                .collect();
            Err(format!(
                "routes {} of {} use `{GENERIC}`, each with its own settings: pick one with --route NAME",
                routes.join(", "),
                path.display()
            ))
        }
        (Some((route, scheme)), _) => Ok((Arc::new(scheme.clone()), Some(notice(route, scheme)))),
        (None, _) if name == GENERIC => Err(generic_needs_a_route(&path, true)),
        (None, _) => Err(format!(
            "unknown scheme `{name}`: neither built in nor used by a route of {}; \
             `hookgate schemes` lists the built-in ones",
            path.display()
        )),
    }
}

/// `hookgate sign`: the headers (and, when they change, the URL and body) to
/// send, or a curl command that sends them.
pub fn sign_command(request: &SignRequest) -> Result<Signed, String> {
    let (scheme, notice) = scheme_for(request)?;
    let secret = SecretRef::parse(&request.secret).resolve(Path::new("."))?;
    let signed = sign(&scheme, secret.expose(), &request.delivery)?;
    let text = match &request.curl {
        Some(target) => curl(request, &signed, target),
        None => plain(request, &signed),
    };
    Ok(Signed { text, notice })
}

fn plain(request: &SignRequest, signed: &SignedDelivery) -> String {
    let mut out = String::new();
    if signed.url != request.delivery.url {
        let _ = writeln!(out, "# url: {}", signed.url);
    }
    for (name, value) in &signed.headers {
        let _ = writeln!(out, "{name}: {value}");
    }
    if signed.body != request.delivery.body {
        let _ = write!(out, "\n{}\n", String::from_utf8_lossy(&signed.body));
    }
    out
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn curl(request: &SignRequest, signed: &SignedDelivery, target: &str) -> String {
    // Query parameters the signature added (Twilio's bodySHA256) go to the target too.
    let added = signed.url.strip_prefix(&request.delivery.url).unwrap_or("");
    let mut url = target.to_owned();
    if let Some(params) = added.strip_prefix(['?', '&']) {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(params);
    }
    let mut out = format!(
        "curl -sS -X {} {}",
        request.delivery.method,
        shell_quote(&url)
    );
    for (name, value) in &signed.headers {
        let _ = write!(out, " -H {}", shell_quote(&format!("{name}: {value}")));
    }
    match (&request.body_file, signed.body == request.delivery.body) {
        (Some(file), true) => {
            let _ = write!(
                out,
                " --data-binary {}",
                shell_quote(&format!("@{}", file.display()))
            );
        }
        _ => {
            let _ = write!(
                out,
                " --data-binary {}",
                shell_quote(&String::from_utf8_lossy(&signed.body))
            );
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_has_120_providers_and_30_handshakes() {
        let groups = schemes_by_provider();
        let with = |pick| providers_with(&groups, pick);
        assert!(groups.len() >= 120, "{} providers", groups.len());
        let handshakes = with(|s| !s.handshakes.is_empty() || confirms(s));
        assert!(handshakes >= 30, "{handshakes} providers' handshakes");
        assert!(with(Scheme::fetches_keys) >= 5);
    }

    #[test]
    fn docs_list_every_built_in_scheme_as_generated() {
        let doc = include_str!("../docs/schemes.md");
        let table = schemes_markdown();
        assert!(
            doc.contains(&table),
            "docs/schemes.md's scheme table is stale; replace it with `hookgate schemes --markdown`:\n{table}"
        );
    }

    #[test]
    fn grammar_shows_the_wire_format() {
        let grammar = |name: &str| signature_grammar(&presets::get(name).unwrap());
        assert_eq!(grammar("stripe"), "stripe-signature: t=…,v1=<hex>");
        assert_eq!(
            grammar("standard-webhooks"),
            "webhook-signature: v1,<base64>"
        );
        assert_eq!(grammar("github"), "x-hub-signature-256: sha256=<hex>");
        assert_eq!(grammar("mailgun"), "json:/signature/signature = <hex>");
    }

    #[test]
    fn schemes_are_grouped_by_provider_with_their_markers() {
        let groups = schemes_by_provider();
        let names = |provider: &str| -> Vec<&str> {
            let (_, schemes) = groups.iter().find(|(p, _)| *p == provider).unwrap();
            schemes.iter().map(|s| s.name.as_str()).collect()
        };
        assert_eq!(names("GitHub"), ["github", "github-sha1"]);
        assert_eq!(
            names("Meta"),
            ["facebook", "instagram", "meta", "meta-sha1", "whatsapp"]
        );
        assert_eq!(names("Clerk"), ["clerk"]);
        let providers: Vec<String> = groups.iter().map(|(p, _)| p.to_lowercase()).collect();
        assert!(providers.is_sorted(), "{providers:?}");

        let listing = schemes();
        let line = |name: &str| {
            listing
                .lines()
                .find(|l| l.split_whitespace().any(|w| w == name))
                .unwrap_or_else(|| panic!("{name} is not listed"))
                .to_owned()
        };
        assert!(line("github").starts_with("GitHub "));
        assert!(line("github-sha1").starts_with(' '));
        // The last columns: HANDSHAKE, REMOTE KEYS, DOCS.
        let markers = |name: &str| -> Vec<String> {
            let columns: Vec<String> = line(name).split_whitespace().map(str::to_owned).collect();
            columns[columns.len() - 3..columns.len() - 1].to_vec()
        };
        assert_eq!(markers("twitter"), ["yes", "–"]);
        assert_eq!(markers("stripe"), ["–", "–"]);
        assert!(
            listing.trim_end().ends_with("with remote keys"),
            "{listing}"
        );
    }

    #[test]
    fn schemes_show_whether_their_event_id_and_type_are_signed() {
        let listing = schemes();
        let signedness = |name: &str| -> [String; 2] {
            let line = listing
                .lines()
                .find(|l| l.split_whitespace().any(|w| w == name))
                .unwrap_or_else(|| panic!("{name} is not listed"));
            // … ID, TYPE, HANDSHAKE, REMOTE KEYS, DOCS.
            let columns: Vec<&str> = line.split_whitespace().collect();
            [columns.len() - 5, columns.len() - 4].map(|i| columns[i].to_owned())
        };
        assert!(listing.lines().next().unwrap().contains(" ID  "));
        assert_eq!(signedness("rye"), ["signed", "signed"]);
        assert_eq!(signedness("github"), ["unsigned", "unsigned"]);
        assert_eq!(signedness("gitlab"), ["unsigned", "unsigned"]);
        assert_eq!(signedness("razorpay"), ["unsigned", "signed"]);
        assert_eq!(signedness("standard-webhooks"), ["signed", "signed"]);
        assert_eq!(signedness("aryeo"), ["–", "–"]);

        let table = schemes_markdown();
        let row = |name: &str| {
            let needle = format!("[`{name}`]");
            table
                .lines()
                .find(|l| l.contains(&needle))
                .unwrap()
                .to_owned()
        };
        assert!(
            row("rye").contains(
                "| `json:/id` (unsigned: `header:x-rye-event-id`) | `json:/type` (unsigned: `header:x-rye-topic`) |"
            ),
            "{}",
            row("rye")
        );
        assert!(row("github").contains(
            "| unsigned: `header:x-github-delivery` | unsigned: `header:x-github-event` |"
        ));
        assert!(row("stripe").contains("| `json:/id` | `json:/type` |"));
    }

    #[test]
    fn curl_quotes_for_the_shell() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
