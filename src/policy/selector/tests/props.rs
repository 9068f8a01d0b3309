//! Property tests: printing and parsing agree, `!( … )` negates, evaluation agrees with a
//! naive reading of reference/calico-selectors.md §3, and the parser never panics.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::{Expr, Selector};

/// Labels from a small alphabet (with the punctuation labels allow), keyword-named labels, and
/// the longest allowed label.
fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[ab/._-]{1,2}",
        2 => prop::sample::select(vec![
            "in", "not", "contains", "starts", "ends", "with", "has", "all", "global", "a-b.c/d_e",
        ])
        .prop_map(String::from),
        1 => Just("z".repeat(512)),
    ]
}

/// Values: mostly short, so they collide with label values; otherwise anything but both kinds
/// of quote, including characters that mean something outside a literal.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[ab]{0,2}",
        2 => "[ab' .{}()&|!=,é\t\n-]{0,6}",
        2 => "[ab\" .{}()&|!=,é\t\n-]{0,6}",
    ]
}

fn leaf() -> impl Strategy<Value = Expr> {
    let set = || prop::collection::btree_set(value(), 0..4);
    prop_oneof![
        Just(Expr::All),
        Just(Expr::Global),
        label().prop_map(Expr::Has),
        (label(), value()).prop_map(|(k, v)| Expr::Eq(k, v)),
        (label(), value()).prop_map(|(k, v)| Expr::Ne(k, v)),
        (label(), set()).prop_map(|(k, s)| Expr::In(k, s)),
        (label(), set()).prop_map(|(k, s)| Expr::NotIn(k, s)),
        (label(), value()).prop_map(|(k, v)| Expr::Contains(k, v)),
        (label(), value()).prop_map(|(k, v)| Expr::StartsWith(k, v)),
        (label(), value()).prop_map(|(k, v)| Expr::EndsWith(k, v)),
    ]
}

/// Any tree, including the shapes the parser never builds (double negation, groups of zero or
/// one member).
fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(5, 48, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
            prop::collection::vec(inner.clone(), 0..4).prop_map(Expr::And),
            prop::collection::vec(inner, 0..4).prop_map(Expr::Or),
        ]
    })
}

fn label_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(label(), value(), 0..8)
}

/// §3 read literally, on a plain map, without sharing code with `eval.rs`.
fn reference(e: &Expr, labels: &BTreeMap<String, String>) -> bool {
    let value = |k: &String| labels.get(k);
    match e {
        Expr::All | Expr::Global => true,
        Expr::Has(k) => labels.contains_key(k),
        Expr::Eq(k, v) => value(k) == Some(v),
        Expr::Ne(k, v) => value(k).is_none() || value(k) != Some(v),
        Expr::In(k, set) => value(k).is_some_and(|x| set.contains(x)),
        Expr::NotIn(k, set) => value(k).is_none_or(|x| !set.contains(x)),
        Expr::Contains(k, s) => value(k).is_some_and(|x| x.contains(s.as_str())),
        Expr::StartsWith(k, s) => value(k).is_some_and(|x| x.starts_with(s.as_str())),
        Expr::EndsWith(k, s) => value(k).is_some_and(|x| x.ends_with(s.as_str())),
        Expr::Not(inner) => !reference(inner, labels),
        Expr::And(children) => children.iter().all(|c| reference(c, labels)),
        Expr::Or(children) => children.iter().any(|c| reference(c, labels)),
    }
}

/// A deterministic source of choices for [`noisy`].
#[derive(Debug, Clone)]
struct Noise {
    bytes: Vec<u8>,
    next: usize,
}

impl Noise {
    /// A number below `n`.
    fn pick(&mut self, n: u8) -> u8 {
        let b = self.bytes.get(self.next % self.bytes.len().max(1)).copied();
        self.next += 1;
        b.unwrap_or(0) % n
    }

    /// Optional whitespace: nothing, a space, a tab, or a mix.
    fn ws(&mut self) -> &'static str {
        ["", "", " ", "\t", "  ", " \t "][usize::from(self.pick(6))]
    }

    /// Required whitespace.
    fn ws1(&mut self) -> &'static str {
        [" ", "\t", "  ", "\t \t"][usize::from(self.pick(4))]
    }

    fn quote(&mut self, v: &str) -> String {
        let single = v.contains('"') || (!v.contains('\'') && self.pick(2) == 0);
        if single {
            format!("'{v}'")
        } else {
            format!("\"{v}\"")
        }
    }
}

/// Prints `e` the way a person might write it: any spacing, either quote, spelling variants of
/// the operators, extra parentheses, pairs of `!`, duplicate set members and trailing commas.
fn noisy(e: &Expr, n: &mut Noise) -> String {
    let body = match e {
        Expr::All => format!("all({})", n.ws()),
        Expr::Global => format!("global({})", n.ws()),
        Expr::Has(k) => format!("has({}{k}{})", n.ws(), n.ws()),
        Expr::Eq(k, v) => format!("{k}{}=={}{}", n.ws(), n.ws(), n.quote(v)),
        Expr::Ne(k, v) => format!("{k}{}!={}{}", n.ws(), n.ws(), n.quote(v)),
        Expr::Contains(k, v) => format!("{k}{}contains{}{}", n.ws1(), n.ws(), n.quote(v)),
        Expr::StartsWith(k, v) => {
            format!("{k}{}starts{}with{}{}", n.ws1(), n.ws(), n.ws(), n.quote(v))
        }
        Expr::EndsWith(k, v) => format!("{k}{}ends{}with{}{}", n.ws1(), n.ws(), n.ws(), n.quote(v)),
        Expr::In(k, set) => format!("{k}{}in{}{}", n.ws1(), n.ws(), noisy_set(set, n)),
        Expr::NotIn(k, set) => {
            format!(
                "{k}{}not{}in{}{}",
                n.ws1(),
                n.ws(),
                n.ws(),
                noisy_set(set, n)
            )
        }
        Expr::Not(inner) => format!("!{}{}", n.ws(), noisy(inner, n)),
        Expr::And(children) => noisy_group(children, "&&", "all()", n),
        Expr::Or(children) => noisy_group(children, "||", "!all()", n),
    };
    match n.pick(6) {
        0 => format!("({}{body}{})", n.ws(), n.ws()),
        1 => format!("!{}!{}{body}", n.ws(), n.ws()),
        _ => body,
    }
}

fn noisy_group(children: &[Expr], op: &str, empty: &str, n: &mut Noise) -> String {
    match children {
        [] => empty.to_owned(),
        [only] => noisy(only, n),
        _ => {
            let parts: Vec<String> = children
                .iter()
                .map(|c| format!("{}{}{}", n.ws(), noisy(c, n), n.ws()))
                .collect();
            format!("({})", parts.join(op))
        }
    }
}

fn noisy_set(set: &BTreeSet<String>, n: &mut Noise) -> String {
    let mut items: Vec<String> = Vec::new();
    for v in set.iter().rev() {
        items.push(n.quote(v));
        if n.pick(4) == 0 {
            items.push(n.quote(v));
        }
    }
    let trailing = if !items.is_empty() && n.pick(2) == 0 {
        ","
    } else {
        ""
    };
    let sep = format!("{},{}", n.ws(), n.ws());
    format!("{{{}{}{trailing}{}}}", n.ws(), items.join(&sep), n.ws())
}

fn noise() -> impl Strategy<Value = Noise> {
    prop::collection::vec(any::<u8>(), 1..64).prop_map(|bytes| Noise { bytes, next: 0 })
}

/// Checks what every parse result must satisfy, accepted or not.
fn check_any_input(s: &str) -> Result<(), TestCaseError> {
    match Selector::parse(s) {
        Ok(sel) => {
            let printed = sel.to_string();
            let again = Selector::parse(&printed);
            prop_assert_eq!(again.as_ref(), Ok(&sel), "{:?} printed as {:?}", s, printed);
        }
        Err(e) => {
            prop_assert!(
                e.span.start <= e.span.end && e.span.end <= s.len(),
                "{:?}",
                e
            );
            prop_assert!(s.is_char_boundary(e.span.start) && s.is_char_boundary(e.span.end));
            prop_assert_eq!(e.column, s[..e.span.start].chars().count() + 1);
            let first = e.message.chars().next();
            prop_assert!(first.is_some_and(|c| !c.is_uppercase()), "{:?}", e.message);
            prop_assert!(!e.message.ends_with('.'), "{:?}", e.message);
            prop_assert!(e.render(s).contains(&e.message));
        }
    }
    Ok(())
}

proptest! {
    // Failures are not persisted: the regressions file would land outside this module.
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// (a) The canonical form parses back to the normalised tree, prints the same again, and
    /// means the same as the original tree.
    #[test]
    fn display_then_parse_round_trips(e in expr(), labels in label_map()) {
        let printed = e.to_string();
        let parsed = Selector::parse(&printed)
            .map_err(|err| TestCaseError::fail(err.render(&printed)))?;
        let normal = e.clone().normalized();
        prop_assert_eq!(parsed.expr(), &normal, "printed {:?}", printed);
        prop_assert_eq!(parsed.to_string(), normal.to_string());
        if e == normal {
            prop_assert_eq!(parsed.to_string(), printed.clone());
        }
        prop_assert_eq!(Selector::from_expr(e.clone()), parsed.clone());
        prop_assert_eq!(parsed.matches(&labels), e.matches(&labels), "{:?}", printed);
    }

    /// (a) Any way of writing a tree parses to its normal form.
    #[test]
    fn noisy_spelling_parses_to_the_normal_form(e in expr(), mut n in noise()) {
        let written = noisy(&e, &mut n);
        let parsed = Selector::parse(&written)
            .map_err(|err| TestCaseError::fail(err.render(&written)))?;
        prop_assert_eq!(parsed.expr(), &e.normalized(), "written {:?}", written);
    }

    /// (b) `!( s )` matches exactly when `s` does not, and both agree with the naive reading.
    #[test]
    fn negation_inverts(e in expr(), mut n in noise(), labels in label_map()) {
        let s = noisy(&e, &mut n);
        let plain = Selector::parse(&s).map_err(|err| TestCaseError::fail(err.render(&s)))?;
        let negated_text = format!("!({s})");
        let negated = Selector::parse(&negated_text)
            .map_err(|err| TestCaseError::fail(err.render(&negated_text)))?;
        let expected = reference(&e, &labels);
        prop_assert_eq!(plain.matches(&labels), expected, "{:?} on {:?}", s, labels);
        prop_assert_eq!(negated.matches(&labels), !expected, "{:?} on {:?}", negated_text, labels);
    }

    /// (c) Arbitrary strings, including non-ASCII and control characters, never panic.
    #[test]
    fn parser_never_panics_on_any_string(s in any::<String>()) {
        check_any_input(&s)?;
    }

    /// (c) Strings made of the language's own characters reach deeper into the parser.
    #[test]
    fn parser_never_panics_on_selector_characters(
        s in "[ab !=&|(){},'\"\t\n%é/._-]{0,40}",
    ) {
        check_any_input(&s)?;
    }

    /// (c) Selectors with a few characters deleted, inserted or replaced: errors at every
    /// depth of the grammar, and some still valid.
    #[test]
    fn parser_never_panics_on_damaged_selectors(
        e in expr(),
        mut n in noise(),
        edits in prop::collection::vec(
            (any::<prop::sample::Index>(), 0..3u8, prop::sample::select(vec![
                ' ', '\t', '\n', '!', '=', '&', '|', '(', ')', '{', '}', ',', '\'', '"', 'a', '/',
                'é', '%',
            ])),
            1..4,
        ),
    ) {
        let mut chars: Vec<char> = noisy(&e, &mut n).chars().collect();
        for (at, op, c) in edits {
            let i = at.index(chars.len() + 1);
            match op {
                0 if i < chars.len() => {
                    chars.remove(i);
                }
                1 if i < chars.len() => chars[i] = c,
                _ => chars.insert(i, c),
            }
        }
        check_any_input(&chars.into_iter().collect::<String>())?;
    }
}
