//! `Field|modifier|…: value(s)` to a [`FieldTest`]: which modifiers exist, which combine, and
//! what each does to the values.

use crate::ast::{Cidr, FieldTest, Pattern, RefKind};
use crate::error::RuleError;
use crate::event::Field;
use crate::string::{SigmaString, base64, base64_offsets};
use yaml_rust2::Yaml;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transform {
    Windash,
    Base64,
    Base64Offset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Regex,
    Cidr,
    Exists,
    FieldRef,
}

#[derive(Debug, Default)]
struct Modifiers {
    position: Option<Position>,
    kind: Option<Kind>,
    transforms: Vec<Transform>,
    all: bool,
    cased: bool,
    re_i: bool,
    re_m: bool,
    re_s: bool,
}

/// Modifiers Sigma defines that we knowingly do not implement.
const UNSUPPORTED: &[&str] = &[
    "wide", "utf16", "utf16le", "utf16be", "expand", "gt", "gte", "lt", "lte", "minute", "hour",
    "day", "week", "month", "year",
];

fn parse_modifiers(key: &str, names: &[&str]) -> Result<Modifiers, RuleError> {
    let mut m = Modifiers::default();
    let combine = |why: String| RuleError::Modifiers {
        key: key.to_owned(),
        why,
    };
    for &name in names {
        let (position, kind) = match name {
            "contains" => (Some(Position::Contains), None),
            "startswith" => (Some(Position::StartsWith), None),
            "endswith" => (Some(Position::EndsWith), None),
            "re" => (None, Some(Kind::Regex)),
            "cidr" => (None, Some(Kind::Cidr)),
            "exists" => (None, Some(Kind::Exists)),
            "fieldref" => (None, Some(Kind::FieldRef)),
            "all" => {
                m.all = true;
                continue;
            }
            "cased" => {
                m.cased = true;
                continue;
            }
            "i" | "ignorecase" => {
                m.re_i = true;
                continue;
            }
            "m" | "multiline" => {
                m.re_m = true;
                continue;
            }
            "s" | "dotall" => {
                m.re_s = true;
                continue;
            }
            "windash" => {
                m.transforms.push(Transform::Windash);
                continue;
            }
            "base64" => {
                m.transforms.push(Transform::Base64);
                continue;
            }
            "base64offset" => {
                m.transforms.push(Transform::Base64Offset);
                continue;
            }
            other if UNSUPPORTED.contains(&other) => {
                return Err(RuleError::UnsupportedModifier(other.to_owned()));
            }
            other => return Err(RuleError::UnknownModifier(other.to_owned())),
        };
        if let Some(position) = position {
            if m.position.is_some() {
                return Err(combine(
                    "more than one of contains/startswith/endswith".into(),
                ));
            }
            m.position = Some(position);
        }
        if let Some(kind) = kind {
            if m.kind.is_some() {
                return Err(combine("more than one of re/cidr/exists/fieldref".into()));
            }
            m.kind = Some(kind);
        }
    }
    let kind = m.kind.unwrap_or(Kind::Str);
    if (m.re_i || m.re_m || m.re_s) && kind != Kind::Regex {
        return Err(combine("i/m/s only apply to re".into()));
    }
    if m.position.is_some() && !matches!(kind, Kind::Str | Kind::FieldRef) {
        return Err(combine(
            "contains/startswith/endswith do not apply to re, cidr or exists".into(),
        ));
    }
    if !m.transforms.is_empty() && kind != Kind::Str {
        return Err(combine(
            "windash/base64/base64offset only apply to string matches".into(),
        ));
    }
    if m.transforms.contains(&Transform::Base64Offset) && m.position != Some(Position::Contains) {
        return Err(combine("base64offset needs contains".into()));
    }
    if kind == Kind::Exists && (m.all || m.cased) {
        return Err(combine("exists takes no other modifier".into()));
    }
    m.kind = Some(kind);
    Ok(m)
}

/// The text of a scalar as Sigma sees it: numbers and booleans match their decimal/word form.
fn scalar_text(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Builds the test for one `key: value` pair of a search map; `key` may be empty for keywords.
pub fn field_test(key: &str, value: &Yaml) -> Result<FieldTest, RuleError> {
    let mut parts = key.split('|');
    let name = parts.next().unwrap_or_default();
    let names: Vec<&str> = parts.collect();
    let field = if name.is_empty() {
        None
    } else {
        Some(Field::from_name(name).ok_or_else(|| RuleError::UnknownField(name.to_owned()))?)
    };
    let modifiers = parse_modifiers(key, &names)?;
    let values: Vec<&Yaml> = match value {
        Yaml::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut out = Vec::with_capacity(values.len());
    for value in values {
        out.push(patterns(key, field.is_none(), &modifiers, value)?);
    }
    Ok(FieldTest {
        field,
        values: out,
        all: modifiers.all,
    })
}

/// Builds a keyword test: each plain value must appear somewhere in some field.
pub fn keyword_test(values: &[&Yaml]) -> Result<FieldTest, RuleError> {
    let modifiers = Modifiers {
        position: Some(Position::Contains),
        kind: Some(Kind::Str),
        ..Modifiers::default()
    };
    let mut out = Vec::with_capacity(values.len());
    for value in values {
        out.push(patterns("keywords", true, &modifiers, value)?);
    }
    Ok(FieldTest {
        field: None,
        values: out,
        all: false,
    })
}

fn patterns(
    key: &str,
    keyword: bool,
    m: &Modifiers,
    value: &Yaml,
) -> Result<Vec<Pattern>, RuleError> {
    let bad = |why: &str| RuleError::Value {
        key: key.to_owned(),
        why: why.to_owned(),
    };
    let kind = m.kind.unwrap_or(Kind::Str);
    if let Yaml::Null = value {
        if kind != Kind::Str || m.position.is_some() || !m.transforms.is_empty() {
            return Err(bad("null takes no modifiers"));
        }
        if keyword {
            return Err(bad("null needs a field"));
        }
        return Ok(vec![Pattern::Null]);
    }
    if kind == Kind::Exists {
        return match value {
            Yaml::Boolean(b) => Ok(vec![Pattern::Exists(*b)]),
            _ => Err(bad("exists takes true or false")),
        };
    }
    let text = scalar_text(value).ok_or_else(|| bad("expected a string, number or boolean"))?;
    match kind {
        Kind::Regex => {
            let source = text;
            // Compile once here so a broken regex is reported at load, with the rule.
            regex::RegexBuilder::new(&source)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| RuleError::Regex {
                    key: key.to_owned(),
                    why: e.to_string(),
                })?;
            Ok(vec![Pattern::Regex {
                source,
                ignore_case: m.re_i,
                multi_line: m.re_m,
                dot_all: m.re_s,
            }])
        }
        Kind::Cidr => Cidr::parse(&text)
            .map(|c| vec![Pattern::Cidr(c)])
            .ok_or_else(|| bad("not an IP network")),
        Kind::FieldRef => {
            let other = Field::from_name(&text).ok_or(RuleError::UnknownField(text))?;
            let kind = match m.position {
                None => RefKind::Equals,
                Some(Position::Contains) => RefKind::Contains,
                Some(Position::StartsWith) => RefKind::StartsWith,
                Some(Position::EndsWith) => RefKind::EndsWith,
            };
            Ok(vec![Pattern::FieldRef {
                other,
                kind,
                cased: m.cased,
            }])
        }
        Kind::Str | Kind::Exists => {
            let mut variants = vec![SigmaString::parse(&text)];
            for transform in &m.transforms {
                variants = apply(*transform, variants).map_err(|why| bad(&why))?;
            }
            let (lead, trail) = match m.position {
                None => (false, false),
                Some(Position::Contains) => (true, true),
                Some(Position::StartsWith) => (false, true),
                Some(Position::EndsWith) => (true, false),
            };
            Ok(variants
                .into_iter()
                .map(|v| Pattern::Str {
                    value: v.wrap(lead, trail),
                    cased: m.cased,
                })
                .collect())
        }
    }
}

fn apply(transform: Transform, variants: Vec<SigmaString>) -> Result<Vec<SigmaString>, String> {
    let mut out = Vec::new();
    for v in variants {
        match transform {
            Transform::Windash => out.extend(v.windash_variants()),
            Transform::Base64 | Transform::Base64Offset => {
                if v.has_wildcards() {
                    return Err("wildcards cannot be base64-encoded; escape them".into());
                }
                let plain = v.plain();
                if transform == Transform::Base64 {
                    out.push(SigmaString::literal(&base64(&plain)));
                } else {
                    out.extend(
                        base64_offsets(&plain)
                            .iter()
                            .map(|s| SigmaString::literal(s)),
                    );
                }
            }
        }
    }
    Ok(out)
}
