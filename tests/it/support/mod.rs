//! Shared test harness: a real upstream, the real gateway binary, clients and
//! provider-style signing.

pub mod client;
pub mod gateway;
pub mod inprocess;
pub mod sign;
pub mod upstream;

/// A `[[routes]]` table with one verify table.
pub fn route(name: &str, path: &str, upstream: &str, verify: &str) -> String {
    format!(
        "[[routes]]\nname = \"{name}\"\npath = \"{path}\"\nupstream = \"{upstream}\"\n\n[routes.verify]\n{verify}\n"
    )
}

/// A verify table body for a built-in scheme with literal secrets.
pub fn scheme(name: &str, secrets: &[&str]) -> String {
    let list: Vec<String> = secrets.iter().map(|s| format!("\"{s}\"")).collect();
    format!("scheme = \"{name}\"\nsecrets = [{}]\n", list.join(", "))
}
