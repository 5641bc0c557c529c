//! One YAML document to one [`Rule`]: metadata, log source, searches and condition.

use crate::ast::{Expr, Level, Rule, Search};
use crate::condition;
use crate::error::RuleError;
use crate::event::Categories;
use crate::modifier::{field_test, keyword_test};
use yaml_rust2::Yaml;
use yaml_rust2::yaml::Hash;

fn get<'a>(map: &'a Hash, key: &str) -> Option<&'a Yaml> {
    map.get(&Yaml::String(key.to_owned()))
}

fn get_str<'a>(map: &'a Hash, key: &str) -> Option<&'a str> {
    get(map, key).and_then(Yaml::as_str)
}

fn wrong(key: &str, expected: &'static str) -> RuleError {
    RuleError::WrongType {
        key: key.to_owned(),
        expected,
    }
}

/// The name a rule goes by in errors, as early as we can know it: `id`, else `title`.
pub fn rule_name(doc: &Yaml) -> Option<String> {
    let map = doc.as_hash()?;
    get_str(map, "id")
        .or_else(|| get_str(map, "title"))
        .map(str::to_owned)
}

/// Interprets one parsed YAML document.
pub fn from_yaml(doc: &Yaml) -> Result<Rule, RuleError> {
    let map = doc.as_hash().ok_or(RuleError::NotAMapping)?;
    if let Some(action) = get(map, "action") {
        return Err(RuleError::Collection(
            action.as_str().unwrap_or("?").to_owned(),
        ));
    }
    if get(map, "correlation").is_some() {
        return Err(RuleError::Correlation);
    }
    let title = get_str(map, "title").ok_or(RuleError::Missing("title"))?;
    let id = get_str(map, "id").unwrap_or(title).to_owned();
    let author = get_str(map, "author")
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned);
    let level = match get(map, "level") {
        None | Some(Yaml::Null) => Level::default(),
        Some(value) => value
            .as_str()
            .and_then(Level::parse)
            .ok_or_else(|| wrong("level", "informational, low, medium, high or critical"))?,
    };
    let tags = match get(map, "tags") {
        None | Some(Yaml::Null) => Vec::new(),
        Some(Yaml::Array(items)) => items
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| wrong("tags", "a list of strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(wrong("tags", "a list of strings")),
    };
    let categories = logsource(get(map, "logsource").ok_or(RuleError::Missing("logsource"))?)?;
    let detection = get(map, "detection")
        .and_then(Yaml::as_hash)
        .ok_or(RuleError::Missing("detection"))?;

    let mut searches = Vec::new();
    let mut conditions = Vec::new();
    for (key, value) in detection {
        let key = key
            .as_str()
            .ok_or_else(|| wrong("detection", "keyed by strings"))?;
        if key == "condition" {
            match value {
                Yaml::String(s) => conditions.push(s.clone()),
                Yaml::Array(items) => {
                    for item in items {
                        let s = item
                            .as_str()
                            .ok_or_else(|| wrong("condition", "a string"))?;
                        conditions.push(s.to_owned());
                    }
                }
                _ => return Err(wrong("condition", "a string or a list of strings")),
            }
        } else if key == "timeframe" {
            return Err(RuleError::Condition {
                condition: "timeframe".into(),
                why: "timeframes need aggregation, which is not supported".into(),
            });
        } else {
            searches.push((key.to_owned(), search(value)?));
        }
    }
    if conditions.is_empty() {
        return Err(RuleError::Missing("detection.condition"));
    }
    let names: Vec<String> = searches.iter().map(|(n, _)| n.clone()).collect();
    let mut exprs = conditions
        .iter()
        .map(|c| condition::parse(c, &names))
        .collect::<Result<Vec<_>, _>>()?;
    let condition = if exprs.len() == 1 {
        exprs.remove(0)
    } else {
        Expr::Or(exprs)
    };
    Ok(Rule {
        id,
        title: title.to_owned(),
        author,
        level,
        tags,
        categories,
        searches,
        condition,
    })
}

fn logsource(value: &Yaml) -> Result<Categories, RuleError> {
    let map = value
        .as_hash()
        .ok_or_else(|| wrong("logsource", "a mapping"))?;
    let product = get_str(map, "product");
    let category = get_str(map, "category");
    let service = get_str(map, "service");
    let describe = || {
        [
            ("product", product),
            ("category", category),
            ("service", service),
        ]
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
        .collect::<Vec<_>>()
        .join(" ")
    };
    if product.is_some_and(|p| !p.eq_ignore_ascii_case("linux")) || service.is_some() {
        return Err(RuleError::Logsource(describe()));
    }
    category
        .and_then(Categories::from_logsource)
        .ok_or_else(|| RuleError::Logsource(describe()))
}

fn search(value: &Yaml) -> Result<Search, RuleError> {
    match value {
        Yaml::Hash(map) => {
            let mut tests = Vec::with_capacity(map.len());
            for (key, value) in map {
                let key = key
                    .as_str()
                    .ok_or_else(|| wrong("search", "keyed by field names"))?;
                tests.push(Search::Test(field_test(key, value)?));
            }
            Ok(Search::And(tests))
        }
        Yaml::Array(items) => {
            if items
                .iter()
                .all(|i| !matches!(i, Yaml::Hash(_) | Yaml::Array(_)))
            {
                let values: Vec<&Yaml> = items.iter().collect();
                return Ok(Search::Test(keyword_test(&values)?));
            }
            let mut alternatives = Vec::with_capacity(items.len());
            for item in items {
                alternatives.push(search(item)?);
            }
            Ok(Search::Or(alternatives))
        }
        Yaml::String(_) | Yaml::Integer(_) | Yaml::Real(_) | Yaml::Boolean(_) => {
            Ok(Search::Test(keyword_test(&[value])?))
        }
        _ => Err(wrong("search", "a mapping, a list, or keywords")),
    }
}
