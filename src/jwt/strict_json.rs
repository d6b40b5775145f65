//! What a JOSE header or a JWT claims set must be before serde reads it: a JSON object, in
//! valid UTF-8, whose `\u` escapes all name Unicode scalar values.
//!
//! serde_json is lenient in two ways that matter here. A struct is filled *by position* from a
//! JSON array, so `["HS256"]` reads as `{"alg":"HS256"}`; and members a struct ignores are
//! skipped without checking their UTF-8 or their escapes. RFC 7515 §4 and RFC 7519 §7.2
//! (steps 4 and 10) require a JSON object, and RFC 8259 §8.1 and RFC 7519 §7.2 valid UTF-8.
//! A lone surrogate escape (`\ud800`) names no character, so the text is not valid Unicode
//! either (RFC 8259 §8.2 leaves it to the parser; we refuse it).
//!
//! The check is one pass over the bytes with no allocation; serde then parses as before.

/// Whether `json` may be parsed as a header or claims set (see the [module docs](self)).
///
/// `false` means refuse; `true` does not mean the JSON is well-formed (serde decides that).
pub(crate) fn is_strict_object(json: &[u8]) -> bool {
    // RFC 8259 §2: the only insignificant whitespace. An object starts with `{`; an array, a
    // string or a number cannot become one.
    let first = json
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    first == Some(&b'{') && std::str::from_utf8(json).is_ok() && escapes_are_scalar_values(json)
}

/// Every `\uXXXX` escape is a non-surrogate, or a high surrogate escape directly followed by a
/// low one (RFC 8259 §7).
fn escapes_are_scalar_values(json: &[u8]) -> bool {
    let mut i = 0;
    // A backslash can only start an escape inside a string; anywhere else serde refuses it.
    while let Some(offset) = json[i..].iter().position(|&b| b == b'\\') {
        i += offset + 1;
        match json.get(i) {
            Some(b'u') => {
                let Some(unit) = hex4(json, i + 1) else {
                    return false;
                };
                i += 5;
                match unit {
                    0xD800..=0xDBFF => {
                        let low = match json.get(i..i + 2) {
                            Some(br"\u") => hex4(json, i + 2),
                            _ => None,
                        };
                        if !low.is_some_and(|low| (0xDC00..=0xDFFF).contains(&low)) {
                            return false;
                        }
                        i += 6;
                    }
                    0xDC00..=0xDFFF => return false,
                    _ => {}
                }
            }
            // Any other escape is one more byte (`\\` too, so `\\ud800` is no escape).
            Some(_) => i += 1,
            None => return false,
        }
    }
    true
}

/// The four hex digits at `at`, as a UTF-16 code unit.
fn hex4(json: &[u8], at: usize) -> Option<u16> {
    let digits = json.get(at..at + 4)?;
    digits.iter().try_fold(0u16, |unit, &b| {
        let digit = (b as char).to_digit(16)?;
        // Four digits: at most 0xFFFF, no overflow.
        Some(unit << 4 | digit as u16)
    })
}

#[cfg(test)]
mod tests {
    use super::is_strict_object;

    #[test]
    fn objects_in_valid_unicode_pass() {
        for ok in [
            &br#"{"alg":"HS256"}"#[..],
            b" \r\n\t{}",
            br#"{"x":"\ud83d\ude00 \\ud800 \" \u00e9"}"#,
            "{\"x\":\"\u{e9}\u{1f600}\"}".as_bytes(),
        ] {
            assert!(is_strict_object(ok), "{}", String::from_utf8_lossy(ok));
        }
    }

    #[test]
    fn non_objects_bad_utf8_and_lone_surrogates_are_refused() {
        for bad in [
            &br#"["HS256"]"#[..],
            br#""HS256""#,
            b"null",
            b"",
            b"   ",
            b"\xef\xbb\xbf{}", // a byte order mark is not JSON whitespace (RFC 8259 §8.1)
            b"{\"x\":\"\xff\xfe\"}",
            b"{\"x\":\"\xed\xa0\x80\"}",
            br#"{"x":"\ud800"}"#,
            br#"{"x":"\ud800\u0041"}"#,
            br#"{"x":"\ud800\ud800"}"#,
            br#"{"x":"\udc00"}"#,
            br#"{"x":"\ud83d\ude0"}"#,
            br#"{"x":"\u12"}"#,
            br#"{"x":"\uzzzz"}"#,
            b"{\"x\":\"\\",
        ] {
            assert!(!is_strict_object(bad), "{}", String::from_utf8_lossy(bad));
        }
    }
}
