//! Shared test harness: a real upstream, the real gateway binary, clients and
//! provider-style signing.

pub mod client;
pub mod demo_app;
pub mod gateway;
pub mod inprocess;
pub mod raw_upstream;
pub mod redis;
pub mod remote;
pub mod sign;
pub mod upstream;

/// A `[[routes]]` table with one verify table.
pub fn route(name: &str, path: &str, upstream: &str, verify: &str) -> String {
    format!(
        "[[routes]]\nname = \"{name}\"\npath = \"{path}\"\nupstream = \"{upstream}\"\n\n[routes.verify]\n{verify}\n"
    )
}

/// `n` routes `r1` … `rN` verifying `aryeo` with `secret`, forwarding to
/// `upstream`: by `N % 4`, `path = "/r/N"`, `path_prefix = "/p/N/"`,
/// `path = "/h/N"` with `host = "hN.example"`, and `path_prefix = "/q/N"` with
/// POST and PUT.
pub fn many_routes(n: usize, upstream: &str, secret: &str) -> String {
    let mut text = String::new();
    for i in 1..=n {
        let rule = match i % 4 {
            0 => format!("path = \"/r/{i}\""),
            1 => format!("path_prefix = \"/p/{i}/\""),
            2 => format!("path = \"/h/{i}\"\nhost = \"h{i}.example\""),
            _ => format!("path_prefix = \"/q/{i}\"\nmethods = [\"POST\", \"PUT\"]"),
        };
        text.push_str(&format!(
            "[[routes]]\nname = \"r{i}\"\n{rule}\nupstream = \"{upstream}/to/{i}\"\n\
             verify = {{ scheme = \"aryeo\", secrets = [\"{secret}\"] }}\n\n"
        ));
    }
    text
}

/// A verify table body for a built-in scheme with literal secrets.
pub fn scheme(name: &str, secrets: &[&str]) -> String {
    let list: Vec<String> = secrets.iter().map(|s| format!("\"{s}\"")).collect();
    format!("scheme = \"{name}\"\nsecrets = [{}]\n", list.join(", "))
}
