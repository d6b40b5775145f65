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
    first == Some(&b'{')
        && (ascii_without_escapes(json)
            || (std::str::from_utf8(json).is_ok() && escapes_are_scalar_values(json)))
}

/// Whether every byte is ASCII and none is a backslash: then the text is valid UTF-8 and holds
/// no escape, which is what almost every token's JSON is. One branch-free pass (eight bytes at a
/// time); anything else takes the exact checks.
fn ascii_without_escapes(json: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    const BACKSLASH: u64 = ONES * b'\\' as u64;
    let mut flags = 0u64;
    let mut words = json.chunks_exact(8);
    for word in &mut words {
        if let Ok(word) = <[u8; 8]>::try_from(word) {
            let word = u64::from_le_bytes(word);
            // A byte of `no_backslash` is zero exactly where `word` has a backslash; the
            // subtraction sets that byte's high bit (the classic "has a zero byte" test).
            let no_backslash = word ^ BACKSLASH;
            flags |= word | (no_backslash.wrapping_sub(ONES) & !no_backslash);
        }
    }
    for &b in words.remainder() {
        flags |= u64::from(b) | if b == b'\\' { 0x80 } else { 0 };
    }
    flags & HIGH == 0
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
    fn the_ascii_fast_path_sees_every_non_ascii_byte_and_backslash() {
        // At every offset, inside and after the eight-byte words.
        for len in 1..40 {
            for at in 0..len {
                for byte in [b'\\', 0x80, 0xff, 0xc3] {
                    let mut json = vec![b'a'; len];
                    json[at] = byte;
                    assert!(!super::ascii_without_escapes(&json), "{len} {at} {byte:#x}");
                }
                assert!(super::ascii_without_escapes(&vec![b'a'; len]));
            }
        }
        // Bytes next to a backslash's value (0x5c) are not mistaken for it.
        assert!(super::ascii_without_escapes(b"[]^_[]^_[]^_[]^_[]^"));
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
