//! Serde helpers for the ways MISP writes the same field.
//!
//! MISP and the tools around it disagree on JSON types from version to
//! version: `to_ids` is `true`, `"1"` or `1`; timestamps are `"1513893957"`
//! or `1513893957`; `Tag` is a list, `null` or missing. A feed reader that
//! insists on one form drops real feeds, so these helpers accept every form
//! MISP is known to produce and refuse the rest: a value that is neither
//! means the document is not what we think it is.

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::fmt;

/// `true`/`false`, `1`/`0`, `"1"`/`"0"`, `"true"`/`"false"`; `null` is false.
pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a boolean, 0/1 or \"0\"/\"1\"")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
            match v {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(E::invalid_value(de::Unexpected::Unsigned(v), &self)),
            }
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
            match v {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" => Ok(true),
                "0" | "false" | "" => Ok(false),
                _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
            }
        }
        fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_none<E: de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
    }
    d.deserialize_any(V)
}

/// A Unix time as a number or a numeric string; `null`, `""` and a missing
/// field are `None`.
pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a non-negative integer or a numeric string")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u64::try_from(v)
                .map(Some)
                .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            let v = v.trim();
            if v.is_empty() {
                return Ok(None);
            }
            v.parse()
                .map(Some)
                .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// A string, or a number written as one (`"value": 443` for a port); `null`
/// is `None`. Lists and objects are refused.
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// Like [`opt_string`], with `null` as the empty string.
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    opt_string(d).map(Option::unwrap_or_default)
}

/// A list that may also be `null` (MISP writes `"Tag": null` at times).
pub fn vec<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// MISP `Tag` lists as tag names: `[{"name": "tlp:white", ...}, ...]`, or
/// `null`. Old feeds carry `exportable`, new ones `local`; only the name
/// matters here. A tag without a name is dropped.
pub fn tag_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    struct Tag {
        #[serde(default, deserialize_with = "opt_string")]
        name: Option<String>,
    }
    let tags: Vec<Tag> = vec(d)?;
    Ok(tags.into_iter().filter_map(|t| t.name).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    struct B {
        #[serde(default, deserialize_with = "bool")]
        v: bool,
    }
    #[derive(Deserialize, Debug)]
    struct T {
        #[serde(default, deserialize_with = "opt_u64")]
        v: Option<u64>,
    }
    #[derive(Deserialize, Debug)]
    struct S {
        #[serde(default, deserialize_with = "opt_string")]
        v: Option<String>,
    }

    fn check_bool(json: &str, expected: Option<bool>) {
        let got = serde_json::from_str::<B>(json).ok().map(|b| b.v);
        assert_eq!(got, expected, "{json}");
    }

    #[test]
    fn booleans_in_every_misp_spelling() {
        check_bool(r#"{"v": true}"#, Some(true));
        check_bool(r#"{"v": false}"#, Some(false));
        check_bool(r#"{"v": 1}"#, Some(true));
        check_bool(r#"{"v": 0}"#, Some(false));
        check_bool(r#"{"v": "1"}"#, Some(true));
        check_bool(r#"{"v": "0"}"#, Some(false));
        check_bool(r#"{"v": "True"}"#, Some(true));
        check_bool(r#"{"v": null}"#, Some(false));
        check_bool(r#"{}"#, Some(false));
        check_bool(r#"{"v": "maybe"}"#, None);
        check_bool(r#"{"v": 2}"#, None);
        check_bool(r#"{"v": [true]}"#, None);
    }

    #[test]
    fn timestamps_as_numbers_or_strings() {
        let check = |json: &str, expected: Option<Option<u64>>| {
            let got = serde_json::from_str::<T>(json).ok().map(|t| t.v);
            assert_eq!(got, expected, "{json}");
        };
        check(r#"{"v": 1513893957}"#, Some(Some(1513893957)));
        check(r#"{"v": "1513893957"}"#, Some(Some(1513893957)));
        check(r#"{"v": ""}"#, Some(None));
        check(r#"{"v": null}"#, Some(None));
        check(r#"{}"#, Some(None));
        check(r#"{"v": -5}"#, None);
        check(r#"{"v": "yesterday"}"#, None);
        check(r#"{"v": {"a": 1}}"#, None);
    }

    #[test]
    fn strings_accept_numbers_but_not_structures() {
        let check = |json: &str, expected: Option<Option<&str>>| {
            let got = serde_json::from_str::<S>(json).ok().map(|s| s.v);
            assert_eq!(got.as_ref().map(|o| o.as_deref()), expected, "{json}");
        };
        check(r#"{"v": "evil.example"}"#, Some(Some("evil.example")));
        check(r#"{"v": 443}"#, Some(Some("443")));
        check(r#"{"v": null}"#, Some(None));
        check(r#"{"v": ["a"]}"#, None);
        check(r#"{"v": {"a": 1}}"#, None);
    }
}
