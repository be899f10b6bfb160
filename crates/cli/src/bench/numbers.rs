//! Which children `cpis bench check` checks, and for which care setting's organisation.

use std::path::Path;

use cpis_domain::NhsNumber;

use crate::failure::Failure;

/// The children to check, in the order workers take them (round robin), and how many of
/// them the source said are flagged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Children {
    /// NHS numbers, 10 digits each, flagged and unflagged interleaved.
    pub(crate) numbers: Vec<String>,
    /// Where they came from, for the report.
    pub(crate) source: String,
}

/// The numbers given with `--nhs-number`, else those of `<data_dir>/demo.json` (its
/// `nhs_numbers` object: lists by kind, e.g. `cpp`, `lac`, `ucpp`, `unflagged`).
pub(crate) fn children(given: &[String], data_dir: &Path) -> Result<Children, Failure> {
    if !given.is_empty() {
        return Ok(Children {
            numbers: parse_all(given.iter().map(String::as_str), "--nhs-number")?,
            source: "--nhs-number".to_owned(),
        });
    }
    let path = data_dir.join("demo.json");
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Failure::usage(format!(
                "no children to check: pass --nhs-number (repeatable), or run `cpis dev`, \
                 whose {} lists its demo children",
                path.display()
            )));
        }
        Err(e) => return Err(Failure::io(&path, e)),
    };
    let demo: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| Failure::usage(format!("{}: not JSON ({e})", path.display())))?;
    let Some(lists) = demo.get("nhs_numbers").and_then(|v| v.as_object()) else {
        return Err(Failure::usage(format!(
            "{}: no \"nhs_numbers\" object (lists of NHS numbers by kind); pass --nhs-number",
            path.display()
        )));
    };
    let mut columns: Vec<Vec<&str>> = Vec::new();
    for (kind, list) in lists {
        let Some(list) = list.as_array() else {
            return Err(Failure::usage(format!(
                "{}: nhs_numbers.{kind} is not a list",
                path.display()
            )));
        };
        columns.push(list.iter().filter_map(|v| v.as_str()).collect());
    }
    // Interleaved, so that every stretch of checks mixes the kinds.
    let longest = columns.iter().map(Vec::len).max().unwrap_or(0);
    let interleaved =
        (0..longest).flat_map(|i| columns.iter().filter_map(move |c| c.get(i).copied()));
    let numbers = parse_all(interleaved, &path.display().to_string())?;
    if numbers.is_empty() {
        return Err(Failure::usage(format!(
            "{}: nhs_numbers lists no numbers; pass --nhs-number",
            path.display()
        )));
    }
    Ok(Children {
        numbers,
        source: path.display().to_string(),
    })
}

fn parse_all<'a>(
    numbers: impl IntoIterator<Item = &'a str>,
    source: &str,
) -> Result<Vec<String>, Failure> {
    numbers
        .into_iter()
        .map(|n| {
            n.parse::<NhsNumber>()
                .map(|n| n.as_str().to_owned())
                .map_err(|e| Failure::usage(format!("{source}: {n}: {e}")))
        })
        .collect()
}

/// The organisation a session token acts for (its `org` claim), read without verifying
/// it: the services verify it; this only chooses the care setting to check from.
pub(crate) fn token_organisation(token: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("org")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_lists_are_interleaved_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let none = children(&[], dir.path()).unwrap_err();
        assert_eq!(none.code, 2);
        assert!(none.message.contains("--nhs-number"), "{}", none.message);

        std::fs::write(
            dir.path().join("demo.json"),
            r#"{"nhs_numbers": {"cpp": ["9434765919", "943 476 5870"], "unflagged": ["9434765927"]}}"#,
        )
        .unwrap();
        let demo = children(&[], dir.path()).unwrap();
        assert_eq!(demo.numbers, ["9434765919", "9434765927", "9434765870"]);

        let given = children(&["9434765919".to_owned()], dir.path()).unwrap();
        assert_eq!(given.numbers, ["9434765919"]);
        let bad = children(&["1234567890".to_owned()], dir.path()).unwrap_err();
        assert_eq!(bad.code, 2);
    }

    #[test]
    fn the_organisation_comes_from_the_tokens_claims() {
        use base64::Engine as _;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"u-1","org":"RJ1"}"#);
        assert_eq!(
            token_organisation(&format!("e30.{payload}.sig")).as_deref(),
            Some("RJ1")
        );
        assert_eq!(token_organisation("not a token"), None);
    }
}
