//! The ratio table: reads criterion's medians (`<dir>/<row>/<contestant>/new/estimates.json`)
//! of one run and prints each contestant against tower-scope, and each cost over its bare
//! Router, as Markdown.

use std::fmt::Write as _;
use std::path::Path;

/// The algorithms of the rows.
pub const ALGS: [&str; 3] = ["HS256", "RS256", "ES256"];
/// The kinds of request of the rows.
pub const KINDS: [&str; 3] = ["valid", "bad-signature", "missing-token"];

/// A contestant: its bench id, its column title, and the bare Router its cost is measured over.
pub struct Contestant {
    pub id: &'static str,
    pub title: &'static str,
    pub bare: &'static str,
}

/// The bench id of the bare axum 0.8 Router.
pub const BARE: &str = "axum-0.8";
/// The bench id of the bare axum 0.7 Router (jwt-authorizer's).
pub const BARE07: &str = "axum-0.7";

/// The contestants of every row, tower-scope first.
pub const CONTESTANTS: [Contestant; 5] = [
    Contestant {
        id: "tower-scope",
        title: "tower-scope",
        bare: BARE,
    },
    Contestant {
        id: "jwt-authorizer",
        title: "jwt-authorizer 0.15.0 (ring, axum 0.7)",
        bare: BARE07,
    },
    Contestant {
        id: "axum-jwt-auth",
        title: "axum-jwt-auth 0.7.0",
        bare: BARE,
    },
    Contestant {
        id: "tower-oauth2",
        title: "tower-oauth2-resource-server 0.12.5",
        bare: BARE,
    },
    Contestant {
        id: "hand-written",
        title: "hand-written `jsonwebtoken` 11",
        bare: BARE,
    },
];

/// tower-scope's JWKS authenticator, without and with its verified-token cache.
pub const JWKS: [&str; 2] = ["tower-scope-jwks", "tower-scope-jwks-cached"];

/// The median of one benchmark in ns, if it ran.
pub fn median(dir: &Path, row: &str, id: &str) -> Option<f64> {
    let path = dir.join(row).join(id).join("new").join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["median"]["point_estimate"].as_f64()
}

fn ns(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{v:.0}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "—".into(),
    }
}

/// A target line: `measured <= limit`.
fn target(out: &mut String, what: &str, measured: Option<f64>, limit: f64) {
    let verdict = match measured {
        Some(m) if m <= limit => "met",
        Some(_) => "NOT met",
        None => "not measured",
    };
    let m = measured.map_or_else(|| "—".into(), |m| format!("{m:.2}"));
    let _ = writeln!(out, "| {what} | {m} | ≤ {limit:.2} | {verdict} |");
}

/// The report as Markdown.
pub fn render(dir: &Path) -> String {
    let get = |row: &str, id: &str| median(dir, row, id);
    let bare = get("bare", BARE);
    let bare07 = get("bare", BARE07);
    let bare_of = |c: &Contestant| if c.bare == BARE07 { bare07 } else { bare };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Median ns per request (criterion, one run). Bare axum 0.8 Router: {} ns; bare axum 0.7 \
         Router: {} ns.\n",
        ns(bare),
        ns(bare07)
    );

    let _ = write!(out, "| row |");
    for c in &CONTESTANTS {
        let _ = write!(out, " {} |", c.title);
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "|---|{}", "---|".repeat(CONTESTANTS.len()));
    for alg in ALGS {
        for kind in KINDS {
            let row = format!("{alg}-{kind}");
            let ts = get(&row, CONTESTANTS[0].id);
            let _ = write!(out, "| {alg} {kind} |");
            for c in &CONTESTANTS {
                let v = get(&row, c.id);
                if c.id == CONTESTANTS[0].id {
                    let _ = write!(out, " {} |", ns(v));
                } else {
                    let _ = write!(out, " {} ({}) |", ns(v), ratio(v, ts));
                }
            }
            let _ = writeln!(out);
        }
    }
    let _ = writeln!(
        out,
        "\n(In parentheses: the contestant's time / tower-scope's. Lower is faster.)\n"
    );

    let _ = writeln!(
        out,
        "Cost over the bare Router (median − bare), ns, and in parentheses that cost / \
         tower-scope's cost:\n"
    );
    let _ = write!(out, "| row |");
    for c in &CONTESTANTS {
        let _ = write!(out, " {} |", c.title);
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "|---|{}", "---|".repeat(CONTESTANTS.len()));
    let cost = |row: &str, c: &Contestant| Some(get(row, c.id)? - bare_of(c)?);
    for alg in ALGS {
        for kind in KINDS {
            let row = format!("{alg}-{kind}");
            let ts = cost(&row, &CONTESTANTS[0]);
            let _ = write!(out, "| {alg} {kind} |");
            for c in &CONTESTANTS {
                let v = cost(&row, c);
                if c.id == CONTESTANTS[0].id {
                    let _ = write!(out, " {} |", ns(v));
                } else {
                    let _ = write!(out, " {} ({}) |", ns(v), ratio(v, ts));
                }
            }
            let _ = writeln!(out);
        }
    }

    let _ = writeln!(
        out,
        "\ntower-scope's JWKS authenticator (keys fetched once from the loopback mock issuer), \
         without and with its verified-token cache; cost over bare / bare in parentheses:\n"
    );
    let _ = writeln!(
        out,
        "| row | JWKS, no cache | JWKS, token cache | cached / uncached |"
    );
    let _ = writeln!(out, "|---|---|---|---|");
    let over_bare = |v: Option<f64>| match (v, bare) {
        (Some(v), Some(b)) => format!("{:.2}", (v - b) / b),
        _ => "—".into(),
    };
    for alg in ALGS {
        for kind in &KINDS[..2] {
            let row = format!("{alg}-{kind}");
            let plain = get(&row, JWKS[0]);
            let cached = get(&row, JWKS[1]);
            let _ = writeln!(
                out,
                "| {alg} {kind} | {} ({}) | {} ({}) | {} |",
                ns(plain),
                over_bare(plain),
                ns(cached),
                over_bare(cached),
                ratio(cached, plain)
            );
        }
    }

    let _ = writeln!(out, "\nIssue 17's targets, as ratios within this run:\n");
    let _ = writeln!(out, "| target | measured | limit | |");
    let _ = writeln!(out, "|---|---|---|---|");
    for alg in ALGS {
        let row = format!("{alg}-missing-token");
        target(
            &mut out,
            &format!("{alg} missing token: tower-scope / jwt-authorizer"),
            (|| Some(get(&row, "tower-scope")? / get(&row, "jwt-authorizer")?))(),
            1.0,
        );
    }
    target(
        &mut out,
        "HS256 valid: tower-scope's cost over bare / jwt-authorizer's",
        (|| Some(cost("HS256-valid", &CONTESTANTS[0])? / cost("HS256-valid", &CONTESTANTS[1])?))(),
        0.45,
    );
    target(
        &mut out,
        "RS256 JWKS token-cache hit: cost over bare / bare",
        (|| Some((get("RS256-valid", JWKS[1])? - bare?) / bare?))(),
        0.7,
    );
    for alg in ALGS {
        let row = format!("{alg}-bad-signature");
        target(
            &mut out,
            &format!("{alg} bad signature through the cache / without it"),
            (|| Some(get(&row, JWKS[1])? / get(&row, JWKS[0])?))(),
            1.05,
        );
    }
    out
}
