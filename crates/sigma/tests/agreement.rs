//! Property: the compiled matcher (Aho-Corasick, exact tables, prefilters, caches) decides
//! exactly as the reference evaluator on random rules and events.

use proptest::prelude::*;
use ringfence_sigma::{
    Categories, Cidr, Config, EventFields, Expr, Field, FieldTest, Level, Pattern, RefKind, Rule,
    RuleSet, Scratch, Search, SigmaString, reference,
};

/// A tiny alphabet so that needles and values collide often, with case pairs and wildcards.
fn text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[aAbB/ \\-]{0,5}").expect("valid")
}

fn sigma_text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[aAbB/\\-*?\\\\]{0,5}").expect("valid")
}

fn field() -> impl Strategy<Value = Field> {
    prop::sample::select(vec![
        Field::Image,
        Field::CommandLine,
        Field::ParentImage,
        Field::User,
    ])
}

fn pattern() -> impl Strategy<Value = Pattern> {
    prop_oneof![
        6 => (sigma_text(), any::<bool>(), 0..4u8, any::<bool>()).prop_map(|(t, cased, place, windash)| {
            let s = SigmaString::parse(&t);
            let s = match place {
                0 => s,
                1 => s.wrap(true, true),
                2 => s.wrap(false, true),
                _ => s.wrap(true, false),
            };
            let s = if windash { s.windash_variants().pop().unwrap_or(s) } else { s };
            Pattern::Str { value: s, cased }
        }),
        1 => ("[ab]{1,2}", any::<bool>()).prop_map(|(source, ignore_case)| Pattern::Regex {
            source, ignore_case, multi_line: false, dot_all: false,
        }),
        1 => any::<bool>().prop_map(Pattern::Exists),
        1 => Just(Pattern::Null),
        1 => Just(Pattern::Cidr(Cidr::parse("10.0.0.0/8").expect("valid"))),
        1 => (field(), prop::sample::select(vec![RefKind::Equals, RefKind::Contains, RefKind::StartsWith, RefKind::EndsWith]), any::<bool>())
            .prop_map(|(other, kind, cased)| Pattern::FieldRef { other, kind, cased }),
    ]
}

fn test() -> impl Strategy<Value = FieldTest> {
    (
        prop::option::weighted(0.9, field()),
        prop::collection::vec(prop::collection::vec(pattern(), 1..3), 0..3),
        any::<bool>(),
    )
        .prop_map(|(field, values, all)| FieldTest { field, values, all })
}

fn search() -> impl Strategy<Value = Search> {
    let leaf = test().prop_map(Search::Test);
    leaf.prop_recursive(2, 6, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..3).prop_map(Search::And),
            prop::collection::vec(inner, 1..3).prop_map(Search::Or),
        ]
    })
}

fn expr(searches: usize) -> impl Strategy<Value = Expr> {
    let leaf = (0..searches).prop_map(Expr::Search);
    leaf.prop_recursive(3, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..3).prop_map(Expr::And),
            prop::collection::vec(inner.clone(), 1..3).prop_map(Expr::Or),
            inner.prop_map(|e| Expr::Not(Box::new(e))),
        ]
    })
}

fn rule() -> impl Strategy<Value = Rule> {
    prop::collection::vec(search(), 1..4).prop_flat_map(|searches| {
        let n = searches.len();
        (Just(searches), expr(n)).prop_map(|(searches, condition)| Rule {
            id: String::new(),
            title: "t".into(),
            author: None,
            level: Level::Medium,
            tags: Vec::new(),
            categories: Categories::PROCESS_CREATION,
            searches: searches
                .into_iter()
                .enumerate()
                .map(|(i, s)| (format!("s{i}"), s))
                .collect(),
            condition,
        })
    })
}

fn event() -> impl Strategy<Value = EventFields<'static>> {
    prop::collection::vec(
        prop::option::weighted(
            0.8,
            prop_oneof![5 => text(), 1 => Just("10.1.2.3".to_owned())],
        ),
        4,
    )
    .prop_map(|values| {
        let mut event = EventFields::new(Categories::PROCESS_CREATION);
        for (field, value) in [
            Field::Image,
            Field::CommandLine,
            Field::ParentImage,
            Field::User,
        ]
        .into_iter()
        .zip(values)
        {
            event.set(field, value.map(Into::into));
        }
        event
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn compiled_agrees_with_reference(
        rules in prop::collection::vec(rule(), 1..5),
        events in prop::collection::vec(event(), 1..8),
    ) {
        let rules: Vec<Rule> = rules.into_iter().enumerate().map(|(i, mut r)| { r.id = format!("r{i}"); r }).collect();
        let (set, skipped) = RuleSet::compile(rules.clone(), &Config::default());
        prop_assert!(skipped.is_empty(), "{:?}", skipped);
        let mut scratch = Scratch::default();
        for event in &events {
            let expected: Vec<u32> = rules
                .iter()
                .enumerate()
                .filter(|(_, r)| reference::matches(r, event))
                .map(|(i, _)| i as u32)
                .collect();
            let got = set.matching(event, &mut scratch).to_vec();
            prop_assert_eq!(got, expected, "event {:?}", event);
        }
    }
}
