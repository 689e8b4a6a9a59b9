//! Where a file is cut into parts, and where it is not.

use super::cuts;

const SETTINGS: &str = "# hookgate config; routes below\n[server]\nlisten = \"127.0.0.1:1\"\n\n";

fn route(name: &str) -> String {
    format!(
        "[[routes]]\nname = \"{name}\"\npath = \"/{name}\"\nupstream = \"http://127.0.0.1:9\"\n\
         [routes.verify]\nscheme = \"aryeo\"\nsecrets = [\"s\"]\n"
    )
}

fn starts(text: &str, needle: &str) -> Vec<usize> {
    text.match_indices(needle).map(|(i, _)| i).collect()
}

#[test]
fn cuts_at_route_headers_every_part_bytes() {
    let text = format!("{SETTINGS}{}", ["a", "b", "c", "d"].map(route).concat());
    let headers = starts(&text, "[[routes]]");
    assert_eq!(cuts(&text, text.len()), Vec::<usize>::new(), "small enough");
    assert_eq!(cuts(&text, 1), headers, "every route its own part");
    let one_route = headers[1] - headers[0];
    assert_eq!(
        cuts(&text, one_route + 1),
        [headers[0], headers[2]],
        "two routes a part"
    );
    let commented = text.replace(
        "[[routes]]\nname = \"c\"",
        "  [[routes]]  # c\nname = \"c\"",
    );
    assert_eq!(
        cuts(&commented, 1).len(),
        4,
        "a header may be indented and commented"
    );
}

#[test]
fn no_cuts_where_they_could_change_the_meaning() {
    let routes = ["a", "b"].map(route).concat();
    let cases = [
        (
            format!("{SETTINGS}{routes}"),
            2,
            "the routes' own tables are fine",
        ),
        (
            format!("{SETTINGS}{routes}[[routes.verify]]\nscheme = \"rye\"\nsecrets = [\"t\"]\n"),
            2,
            "[[routes.…]] too",
        ),
        (
            format!("{SETTINGS}{routes}[schemes.x]\nalgorithm = \"hmac-sha256\"\n"),
            0,
            "another table after the routes",
        ),
        (
            format!("{SETTINGS}{routes}[ routes.verify ]\n"),
            0,
            "a header written otherwise",
        ),
        (
            format!("{SETTINGS}routes = []\n{routes}"),
            0,
            "a `routes` key before them",
        ),
        (
            format!("{SETTINGS}[routes.x]\n{routes}"),
            0,
            "a `routes` table before them",
        ),
        (
            format!("{SETTINGS}x = \"\"\"\n[[routes]]\n\"\"\"\n{routes}"),
            0,
            "a multi-line string",
        ),
        (
            format!("{SETTINGS}x = '''\n'''\n{routes}"),
            0,
            "a multi-line literal string",
        ),
        (
            format!("{SETTINGS}{routes}methods = [\n[\"POST\"]]\n"),
            0,
            "a line of an array",
        ),
    ];
    for (text, want, why) in cases {
        assert_eq!(cuts(&text, 1).len(), want, "{why}");
    }
}
