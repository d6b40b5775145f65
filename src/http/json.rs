//! Reading and editing JSON request bodies without changing what the client sent.
//!
//! A layer that reads one field of a body must hand the handler the same document: a parse
//! into `serde_json::Value` and back turns `123456789012345678901234567890` into `1.2e29` and
//! sorts keys (STYLE 14). So the layers read through borrowed [`RawValue`]s, which keep every
//! value's exact bytes and position, and a forced field is spliced into the original bytes.
//! Duplicate keys on the path to a field a layer reads are refused: a first-wins and a
//! last-wins parser would otherwise read different ids from one body (DESIGN decision 12).

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::ConfigError;

/// Why a body could not be read or edited; each maps to a 400 in the layer that asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JsonError {
    /// Not JSON at all (or not UTF-8, or trailing bytes).
    Syntax,
    /// A key on the path to a field a layer reads appears twice in one object.
    Duplicate(Box<str>),
    /// A field must be forced into something that is not an object.
    NotAnObject,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax | Self::NotAnObject => f.write_str("Invalid request body"),
            Self::Duplicate(key) => write!(f, "Duplicate key {key:?} in request body"),
        }
    }
}

/// An object key as the handler's parser decodes it; borrowed unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// An object's members in document order, duplicates kept so that they can be refused.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> de::Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some((key, value)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    members.push((key.0, value));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// A JSON value inside a body: its exact text and where it sits in the body.
#[derive(Clone, Copy)]
pub(crate) struct Node<'a> {
    raw: &'a RawValue,
    start: usize,
}

impl fmt::Debug for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("start", &self.start)
            .field("len", &self.raw.get().len())
            .finish()
    }
}

impl<'a> Node<'a> {
    fn at(doc: &'a str, raw: &'a RawValue) -> Self {
        // `raw` borrows from `doc` (serde_json hands out sub-slices of the input), so its
        // offset is the distance between the two pointers.
        let start = (raw.get().as_ptr() as usize).wrapping_sub(doc.as_ptr() as usize);
        debug_assert!(start + raw.get().len() <= doc.len());
        Self { raw, start }
    }

    /// The value's exact text.
    pub(crate) fn text(&self) -> &'a str {
        self.raw.get()
    }

    /// The byte range the value occupies in the body.
    pub(crate) fn span(&self) -> Range<usize> {
        self.start..self.start + self.raw.get().len()
    }

    pub(crate) fn is_object(&self) -> bool {
        self.text().starts_with('{')
    }

    pub(crate) fn is_null(&self) -> bool {
        self.text() == "null"
    }

    /// The decoded string, or `None` when the value is not a string.
    pub(crate) fn as_str(&self) -> Option<Cow<'a, str>> {
        if !self.text().starts_with('"') {
            return None;
        }
        let text = self.text();
        // Most ids have no escapes: borrow them between the quotes.
        if !text.contains('\\') {
            return Some(Cow::Borrowed(&text[1..text.len() - 1]));
        }
        serde_json::from_str::<String>(text).ok().map(Cow::Owned)
    }

    /// The members of an object value (`Ok(None)`: not an object). An object whose keys do not
    /// decode (a lone surrogate escape) is a syntax error, as it is to serde_json: treating it
    /// as "no such key" would let a laxer parser behind the layer read a key the layer skipped.
    pub(crate) fn object(&self, doc: &'a str) -> Result<Option<Object<'a>>, JsonError> {
        if !self.is_object() {
            return Ok(None);
        }
        let members: Members<'a> =
            serde_json::from_str(self.text()).map_err(|_| JsonError::Syntax)?;
        Ok(Some(Object {
            doc,
            node: *self,
            members: members.0,
        }))
    }

    /// The elements of an array value (`Ok(None)`: not an array).
    pub(crate) fn array(&self, doc: &'a str) -> Result<Option<Vec<Node<'a>>>, JsonError> {
        if !self.text().starts_with('[') {
            return Ok(None);
        }
        let items: Vec<&'a RawValue> =
            serde_json::from_str(self.text()).map_err(|_| JsonError::Syntax)?;
        Ok(Some(
            items.into_iter().map(|raw| Node::at(doc, raw)).collect(),
        ))
    }
}

/// The members of one JSON object in a body.
pub(crate) struct Object<'a> {
    doc: &'a str,
    node: Node<'a>,
    members: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> Object<'a> {
    /// The value of `key`; a key given twice is refused, whatever its values.
    pub(crate) fn get(&self, key: &str) -> Result<Option<Node<'a>>, JsonError> {
        let mut found = None;
        for (k, raw) in &self.members {
            if k == key {
                if found.is_some() {
                    return Err(JsonError::Duplicate(key.into()));
                }
                found = Some(Node::at(self.doc, raw));
            }
        }
        Ok(found)
    }

    /// Where a new member goes: just before the closing brace, after any existing member.
    fn append_at(&self) -> (usize, bool) {
        (self.node.span().end - 1, self.members.is_empty())
    }
}

/// A parsed body: the whole text, checked to be one JSON value (or empty).
pub(crate) struct Doc<'a> {
    text: &'a str,
    root: Option<Node<'a>>,
}

impl<'a> Doc<'a> {
    /// Checks that `bytes` are one JSON value with nothing after it; an empty or all-blank
    /// body has no root (a create without a body is allowed to mean `{}`).
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, JsonError> {
        let text = std::str::from_utf8(bytes).map_err(|_| JsonError::Syntax)?;
        if text.bytes().all(|b| b.is_ascii_whitespace()) {
            return Ok(Self { text, root: None });
        }
        // Validates the whole document (a RawValue is fully parsed), trailing bytes included.
        let raw: &'a RawValue = serde_json::from_str(text).map_err(|_| JsonError::Syntax)?;
        Ok(Self {
            text,
            root: Some(Node::at(text, raw)),
        })
    }

    /// The document's text (what the client sent).
    pub(crate) fn text(&self) -> &'a str {
        self.text
    }

    /// The top-level value, `None` for an empty body.
    pub(crate) fn root(&self) -> Option<Node<'a>> {
        self.root
    }

    /// The nodes at `path`; an array segment fans out. Parents that are absent or `null`
    /// yield nothing; a parent of another type is [`JsonError::NotAnObject`] (serde derive
    /// structs read arrays by position, so `[["m1","t","other"]]` must not pass as "no field
    /// here"); a duplicate key anywhere on the path is an error.
    pub(crate) fn find(&self, path: &FieldPath) -> Result<Vec<Node<'a>>, JsonError> {
        let mut current: Vec<Node<'a>> = self.root.into_iter().collect();
        for segment in path.segments.iter() {
            let mut next = Vec::with_capacity(current.len());
            for node in current.into_iter().filter(|node| !node.is_null()) {
                match segment {
                    Segment::Key(key) => {
                        let object = node.object(self.text)?.ok_or(JsonError::NotAnObject)?;
                        if let Some(child) = object.get(key)? {
                            next.push(child);
                        }
                    }
                    Segment::Each => {
                        next.extend(node.array(self.text)?.ok_or(JsonError::NotAnObject)?)
                    }
                }
            }
            current = next;
        }
        Ok(current)
    }
}

/// A path to a field: `resourceId`, `memory.resource`, `messages[].resourceId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldPath {
    text: Box<str>,
    segments: Box<[Segment]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(Box<str>),
    /// Every element of an array (`[]`).
    Each,
}

impl FieldPath {
    /// Parses `a.b`, `a[].b` (keys separated by `.`, `[]` after a key for each element).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] for an empty key or a path that ends in `[]`.
    pub(crate) fn parse(text: &str) -> Result<Self, ConfigError> {
        let bad = |reason: &str| ConfigError::InvalidValue {
            setting: "JSON body field",
            reason: format!("{text:?}: {reason}"),
        };
        let mut segments = Vec::new();
        for part in text.split('.') {
            let (key, each) = match part.strip_suffix("[]") {
                Some(key) => (key, true),
                None => (part, false),
            };
            if key.is_empty() || key.contains(['[', ']']) {
                return Err(bad(
                    "use non-empty keys separated by `.`, `[]` after a list",
                ));
            }
            segments.push(Segment::Key(key.into()));
            if each {
                segments.push(Segment::Each);
            }
        }
        if matches!(segments.last(), Some(Segment::Each)) {
            return Err(bad("a path names a field, not a list"));
        }
        Ok(Self {
            text: text.into(),
            segments: segments.into(),
        })
    }

    /// Whether one path is the other or lies inside it (`memory` and `memory.resource`):
    /// forcing both would splice one edit into the other's value.
    pub(crate) fn overlaps(&self, other: &FieldPath) -> bool {
        let n = self.segments.len().min(other.segments.len());
        self.segments[..n] == other.segments[..n]
    }

    /// The path as configured.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// The last key (the field itself).
    fn field(&self) -> &str {
        match self.segments.last() {
            Some(Segment::Key(key)) => key,
            _ => unreachable!("FieldPath::parse refuses paths that do not end in a key"),
        }
    }

    /// The path to the field's parent object, `None` for a top-level field.
    fn parent(&self) -> Option<FieldPath> {
        (self.segments.len() > 1).then(|| FieldPath {
            text: self.text.clone(),
            segments: self.segments[..self.segments.len() - 1].into(),
        })
    }
}

/// Byte-level edits over one body: replaced values and appended members, nothing else.
pub(crate) struct Edits<'a> {
    doc: &'a Doc<'a>,
    /// Values replaced in place.
    splices: Vec<(Range<usize>, String)>,
    /// Members appended before an object's closing brace: (brace position, object was empty,
    /// `"key":"value"`). Several for one object are joined into one splice.
    appends: Vec<(usize, bool, String)>,
    /// Members of the object an empty body becomes.
    empty_body: Vec<String>,
}

impl<'a> Edits<'a> {
    pub(crate) fn new(doc: &'a Doc<'a>) -> Self {
        Self {
            doc,
            splices: Vec::new(),
            appends: Vec::new(),
            empty_body: Vec::new(),
        }
    }

    /// Sets every field at `path` to the string `value`. A field that already decodes to
    /// `value` keeps its bytes; an absent field is appended as the last member of each parent
    /// object that exists; an empty body becomes `{"field":"value"}` for a top-level path.
    /// Parents that are absent or `null` are left alone (nothing to scope there).
    pub(crate) fn force(&mut self, path: &FieldPath, value: &str) -> Result<(), JsonError> {
        let parents = match path.parent() {
            Some(parent) => self.doc.find(&parent)?,
            None => match self.doc.root() {
                Some(root) => vec![root],
                None => {
                    self.empty_body.push(member(path.field(), value));
                    return Ok(());
                }
            },
        };
        for parent in parents {
            if parent.is_null() {
                continue;
            }
            let object = parent
                .object(self.doc.text())?
                .ok_or(JsonError::NotAnObject)?;
            match object.get(path.field())? {
                Some(node) if node.as_str().as_deref() == Some(value) => {}
                Some(node) => self.splices.push((node.span(), encode(value))),
                None => {
                    let (at, empty) = object.append_at();
                    self.appends.push((at, empty, member(path.field(), value)));
                }
            }
        }
        Ok(())
    }

    #[cfg_attr(not(feature = "guard"), allow(dead_code))]
    /// Replaces an existing field's value (the guard's trusted thread id); absent: no edit.
    pub(crate) fn replace(&mut self, node: Node<'_>, value: &str) {
        if node.as_str().as_deref() != Some(value) {
            self.splices.push((node.span(), encode(value)));
        }
    }

    /// The edited body, or `None` when nothing changed (the client's bytes go on as sent).
    pub(crate) fn finish(mut self) -> Option<Bytes> {
        if !self.empty_body.is_empty() {
            return Some(Bytes::from(format!("{{{}}}", self.empty_body.join(","))));
        }
        // One splice per object that gains members: `,"a":"x","b":"y"` (no leading comma into
        // an empty object), so two forced fields never run together.
        self.appends.sort_by_key(|(at, _, _)| *at);
        let mut appends = self.appends.into_iter().peekable();
        while let Some((at, empty, first)) = appends.next() {
            let mut text = String::with_capacity(first.len() + 1);
            if !empty {
                text.push(',');
            }
            text.push_str(&first);
            while let Some((_, _, more)) = appends.next_if(|(next, _, _)| *next == at) {
                text.push(',');
                text.push_str(&more);
            }
            self.splices.push((at..at, text));
        }
        if self.splices.is_empty() {
            return None;
        }
        // Replacements end before the brace an append goes in front of, so sorting by start
        // (replacements first at equal starts) keeps every splice disjoint.
        self.splices
            .sort_by_key(|(range, _)| (range.start, range.end != range.start));
        let text = self.doc.text();
        let extra: usize = self.splices.iter().map(|(_, s)| s.len()).sum();
        let mut out = String::with_capacity(text.len() + extra);
        let mut at = 0;
        for (range, replacement) in &self.splices {
            // Rules refuse forced paths that nest or repeat, so splices never overlap; a second
            // splice of one value (two rules naming it) is dropped rather than doubled.
            if range.start < at {
                continue;
            }
            out.push_str(&text[at..range.start]);
            out.push_str(replacement);
            at = range.end;
        }
        out.push_str(&text[at..]);
        Some(Bytes::from(out))
    }
}

/// A JSON string literal for `value`.
fn encode(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| String::from("\"\""))
}

/// `"key":"value"`.
fn member(key: &str, value: &str) -> String {
    let mut out = String::with_capacity(key.len() + value.len() + 6);
    out.push_str(&encode(key));
    out.push(':');
    out.push_str(&encode(value));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forced(body: &str, path: &str, value: &str) -> Result<String, JsonError> {
        forced_all(body, &[path], value)
    }

    #[test]
    fn forcing_a_field_changes_only_its_value() {
        let body = r#"{ "big": 123456789012345678901234567890, "f": 0.30000000000000004,
            "z": -0, "e": 1E400, "resourceId" : "bob" , "a": "\u00e9" }"#;
        let out = forced(body, "resourceId", "alice").unwrap();
        assert_eq!(out, body.replace(r#""bob""#, r#""alice""#));
    }

    #[test]
    fn an_absent_field_is_appended_as_the_last_member() {
        assert_eq!(
            forced(r#"{"z":1,"a":2}"#, "resourceId", "alice").unwrap(),
            r#"{"z":1,"a":2,"resourceId":"alice"}"#
        );
        assert_eq!(
            forced("{ }", "resourceId", "alice").unwrap(),
            r#"{ "resourceId":"alice"}"#
        );
        assert_eq!(
            forced("  ", "resourceId", "al\"ice").unwrap(),
            r#"{"resourceId":"al\"ice"}"#
        );
    }

    #[test]
    fn a_field_already_equal_keeps_its_spelling() {
        let body = r#"{"resourceId":"al\u0069ce"}"#;
        let doc = Doc::parse(body.as_bytes()).unwrap();
        let mut edits = Edits::new(&doc);
        edits
            .force(&FieldPath::parse("resourceId").unwrap(), "alice")
            .unwrap();
        assert!(edits.finish().is_none());
    }

    #[test]
    fn nested_fields_are_forced_where_their_parent_exists() {
        assert_eq!(
            forced(
                r#"{"memory":{"thread":"t","resource":"bob"},"x":[1]}"#,
                "memory.resource",
                "alice"
            )
            .unwrap(),
            r#"{"memory":{"thread":"t","resource":"alice"},"x":[1]}"#
        );
        assert_eq!(
            forced(r#"{"memory":{"thread":"t"}}"#, "memory.resource", "alice").unwrap(),
            r#"{"memory":{"thread":"t","resource":"alice"}}"#
        );
        // No memory: the request uses none, so there is nothing to scope.
        assert_eq!(
            forced(r#"{"messages":[]}"#, "memory.resource", "alice").unwrap(),
            r#"{"messages":[]}"#
        );
        assert_eq!(
            forced(r#"{"memory":null}"#, "memory.resource", "alice").unwrap(),
            r#"{"memory":null}"#
        );
        assert_eq!(
            forced(r#"{"memory":"t1"}"#, "memory.resource", "alice"),
            Err(JsonError::NotAnObject)
        );
    }

    #[test]
    fn array_paths_force_every_element() {
        assert_eq!(
            forced(
                r#"{"messages":[{"resourceId":"bob"},{"id":"m"}]}"#,
                "messages[].resourceId",
                "alice"
            )
            .unwrap(),
            r#"{"messages":[{"resourceId":"alice"},{"id":"m","resourceId":"alice"}]}"#
        );
    }

    #[test]
    fn duplicate_keys_on_the_path_are_refused_elsewhere_kept() {
        for body in [
            r#"{"resourceId":"alice","resourceId":"bob"}"#,
            r#"{"resource\u0049d":"alice","resourceId":"bob"}"#,
        ] {
            assert_eq!(
                forced(body, "resourceId", "alice"),
                Err(JsonError::Duplicate("resourceId".into()))
            );
        }
        assert_eq!(
            forced(r#"{"memory":{},"memory":{}}"#, "memory.resource", "a"),
            Err(JsonError::Duplicate("memory".into()))
        );
        let body = r#"{"title":"a","title":"b","resourceId":"alice"}"#;
        assert_eq!(forced(body, "resourceId", "alice").unwrap(), body);
    }

    #[test]
    fn malformed_bodies_are_syntax_errors() {
        for body in ["{", r#"{"a":1} x"#, "\u{feff}{}", "[1,]", r#"{"a":01}"#] {
            assert_eq!(
                Doc::parse(body.as_bytes()).err(),
                Some(JsonError::Syntax),
                "{body:?}"
            );
        }
        assert_eq!(Doc::parse(b"\xff").err(), Some(JsonError::Syntax));
        assert_eq!(
            forced("[1]", "resourceId", "a"),
            Err(JsonError::NotAnObject)
        );
    }

    #[test]
    fn find_reads_decoded_strings_through_arrays() {
        let doc = Doc::parse(br#"{"m":[{"id":"a\u0062"},{"id":7},{"x":1}],"n":null}"#).unwrap();
        let ids: Vec<_> = doc
            .find(&FieldPath::parse("m[].id").unwrap())
            .unwrap()
            .iter()
            .map(|n| n.as_str().map(Cow::into_owned))
            .collect();
        assert_eq!(ids, vec![Some("ab".to_owned()), None]);
        assert!(
            doc.find(&FieldPath::parse("n.x").unwrap())
                .unwrap()
                .is_empty()
        );
    }

    fn forced_all(body: &str, paths: &[&str], value: &str) -> Result<String, JsonError> {
        let doc = Doc::parse(body.as_bytes())?;
        let mut edits = Edits::new(&doc);
        for path in paths {
            edits.force(&FieldPath::parse(path).unwrap(), value)?;
        }
        Ok(edits
            .finish()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .unwrap_or_else(|| body.to_owned()))
    }

    #[test]
    fn several_fields_appended_to_one_object_stay_valid_json() {
        for (body, want) in [
            ("{}", r#"{"a":"v","b":"v"}"#),
            ("{ }", r#"{ "a":"v","b":"v"}"#),
            (r#"{"x":1}"#, r#"{"x":1,"a":"v","b":"v"}"#),
            ("", r#"{"a":"v","b":"v"}"#),
            ("  ", r#"{"a":"v","b":"v"}"#),
            (r#"{"a":"old"}"#, r#"{"a":"v","b":"v"}"#),
        ] {
            let out = forced_all(body, &["a", "b"], "v").unwrap();
            assert_eq!(out, want, "{body:?}");
            serde_json::from_str::<serde_json::Value>(&out).unwrap();
        }
        assert_eq!(
            forced_all(
                r#"{"memory":{}}"#,
                &["memory.resource", "memory.thread"],
                "v"
            )
            .unwrap(),
            r#"{"memory":{"resource":"v","thread":"v"}}"#
        );
    }

    #[test]
    fn parents_of_another_type_are_refused_not_skipped() {
        // serde derive structs read arrays by position: `[["m1","t","other"]]` is a message.
        let doc = Doc::parse(br#"{"messages":[["m1","t","other"]],"a":{"b":[1]}}"#).unwrap();
        for path in ["messages[].resourceId", "a.b.c", "a.b[].c"] {
            assert_eq!(
                doc.find(&FieldPath::parse(path).unwrap()).err(),
                Some(JsonError::NotAnObject),
                "{path}"
            );
        }
        let doc = Doc::parse(br#"{"messages":null,"m":[null]}"#).unwrap();
        assert!(
            doc.find(&FieldPath::parse("messages[].id").unwrap())
                .unwrap()
                .is_empty()
        );
        assert!(
            doc.find(&FieldPath::parse("m[].id").unwrap())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn keys_that_do_not_decode_are_syntax_errors() {
        // A lone surrogate passes RawValue's scan but no serde_json reader decodes it.
        let doc = Doc::parse(br#"{"\ud800":"x","resourceId":"bob"}"#).unwrap();
        assert_eq!(
            doc.find(&FieldPath::parse("resourceId").unwrap()).err(),
            Some(JsonError::Syntax)
        );
    }

    #[test]
    fn overlapping_paths_are_detected() {
        let p = |s: &str| FieldPath::parse(s).unwrap();
        assert!(p("memory").overlaps(&p("memory.resource")));
        assert!(p("memory.resource").overlaps(&p("memory")));
        assert!(p("a").overlaps(&p("a")));
        assert!(!p("memory.resource").overlaps(&p("memory.thread")));
        assert!(!p("resourceId").overlaps(&p("resource")));
    }

    #[test]
    fn field_paths_are_validated() {
        for bad in ["", "a..b", "a[]", "[]", "a[x].b", ".a"] {
            assert!(FieldPath::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(FieldPath::parse("a[].b").unwrap().as_str(), "a[].b");
    }
}
