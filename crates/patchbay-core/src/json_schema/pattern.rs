//! The `pattern` keyword's regular expressions: a small subset of ECMA-262,
//! matched without a regex library.
//!
//! Supported: `^` at the start and `$` at the end; literal characters; `.`;
//! the escapes `\d \w \s \D \W \S`, `\n \r \t` and escaped punctuation;
//! classes `[a-z0-9_-]` and `[^…]` (with `\d \w \s` inside); the quantifiers
//! `? * + {n} {n,} {n,m}` (greedy). Not supported: groups, alternation,
//! backreferences, lookaround, lazy quantifiers, `\b`, `\u…` — a schema
//! using them is refused by the meta-check, never half-understood.
//!
//! Without groups no quantifier nests, and failed (token, position) states
//! are remembered, so a match costs at most tokens × length² steps.

/// One thing to match, once.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    /// `.`: any character but a line terminator.
    Any,
    Char(char),
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Atom {
    fn matches(&self, c: char) -> bool {
        match self {
            Atom::Any => !matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}'),
            Atom::Char(x) => *x == c,
            Atom::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}

/// An atom with its repetition bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Piece {
    atom: Atom,
    min: usize,
    max: Option<usize>,
}

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    start: bool,
    end: bool,
    pieces: Vec<Piece>,
}

/// The largest repetition count `{n,m}` may name.
const MAX_REPEAT: usize = 10_000;

const DIGIT: &[(char, char)] = &[('0', '9')];
const WORD: &[(char, char)] = &[('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')];
const SPACE: &[(char, char)] = &[
    ('\t', '\r'),
    (' ', ' '),
    ('\u{a0}', '\u{a0}'),
    ('\u{1680}', '\u{1680}'),
    ('\u{2000}', '\u{200a}'),
    ('\u{2028}', '\u{2029}'),
    ('\u{202f}', '\u{202f}'),
    ('\u{205f}', '\u{205f}'),
    ('\u{3000}', '\u{3000}'),
    ('\u{feff}', '\u{feff}'),
];

/// Characters that mean something and are literal only when escaped.
const SYNTAX: &str = "\\^$.|?*+()[]{}/-";

/// The ranges of a shorthand class (`d`, `w`, `s`) and whether it is negated.
fn shorthand(c: char) -> Option<(bool, &'static [(char, char)])> {
    match c {
        'd' => Some((false, DIGIT)),
        'w' => Some((false, WORD)),
        's' => Some((false, SPACE)),
        'D' => Some((true, DIGIT)),
        'W' => Some((true, WORD)),
        'S' => Some((true, SPACE)),
        _ => None,
    }
}

fn escaped_char(c: char) -> Option<char> {
    match c {
        'n' => Some('\n'),
        'r' => Some('\r'),
        't' => Some('\t'),
        c if SYNTAX.contains(c) => Some(c),
        _ => None,
    }
}

impl Pattern {
    /// Parses `source`, or says which construct is outside the subset.
    pub(crate) fn parse(source: &str) -> Result<Pattern, String> {
        let chars: Vec<char> = source.chars().collect();
        let mut i = 0;
        let start = chars.first() == Some(&'^');
        if start {
            i = 1;
        }
        let mut end = false;
        let mut pieces = Vec::new();
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            let atom = match c {
                '$' if i == chars.len() => {
                    end = true;
                    break;
                }
                '.' => Atom::Any,
                '\\' => {
                    let e = *chars
                        .get(i)
                        .ok_or("the pattern ends in the middle of an escape")?;
                    i += 1;
                    if let Some((negated, ranges)) = shorthand(e) {
                        Atom::Class {
                            negated,
                            ranges: ranges.to_vec(),
                        }
                    } else {
                        Atom::Char(escaped_char(e).ok_or_else(|| {
                            format!("the escape `\\{e}` is not supported (only \\d \\w \\s \\D \\W \\S \\n \\r \\t and escaped punctuation)")
                        })?)
                    }
                }
                '[' => {
                    let (atom, next) = parse_class(&chars, i)?;
                    i = next;
                    atom
                }
                '(' | ')' | '|' => {
                    return Err("groups and alternation (`(`, `)`, `|`) are not supported".into());
                }
                '^' | '$' => {
                    return Err("`^` and `$` are supported only at the start and the end".into());
                }
                '*' | '+' | '?' | '{' => {
                    return Err(format!("`{c}` must follow something to repeat"));
                }
                ']' | '}' => return Err(format!("a literal `{c}` must be escaped")),
                c => Atom::Char(c),
            };
            let before = i;
            let (min, max, next) = parse_quantifier(&chars, i)?;
            i = next;
            if i > before && chars.get(i) == Some(&'?') {
                return Err("lazy quantifiers (`*?`, `+?`, …) are not supported".into());
            }
            pieces.push(Piece { atom, min, max });
        }
        Ok(Pattern { start, end, pieces })
    }

    /// Whether the pattern matches somewhere in `s` (anchors permitting),
    /// as ECMA-262's `RegExp.prototype.test` would.
    pub(crate) fn is_match(&self, s: &str) -> bool {
        let chars: Vec<char> = s.chars().collect();
        let width = chars.len() + 1;
        let mut failed = vec![false; (self.pieces.len() + 1) * width];
        let last_start = if self.start { 0 } else { chars.len() };
        (0..=last_start).any(|at| self.match_at(&chars, 0, at, &mut failed))
    }

    fn match_at(&self, chars: &[char], piece: usize, at: usize, failed: &mut [bool]) -> bool {
        let width = chars.len() + 1;
        if failed[piece * width + at] {
            return false;
        }
        let Some(p) = self.pieces.get(piece) else {
            return !self.end || at == chars.len();
        };
        let mut n = 0;
        while p.max.is_none_or(|m| n < m) && chars.get(at + n).is_some_and(|&c| p.atom.matches(c)) {
            n += 1;
        }
        if n >= p.min {
            for k in (p.min..=n).rev() {
                if self.match_at(chars, piece + 1, at + k, failed) {
                    return true;
                }
            }
        }
        failed[piece * width + at] = true;
        false
    }
}

/// Parses a class body after `[`; returns it and the index after `]`.
fn parse_class(chars: &[char], mut i: usize) -> Result<(Atom, usize), String> {
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    if chars.get(i) == Some(&']') {
        return Err("an empty class `[]` matches nothing; escape a literal `]`".into());
    }
    let mut ranges = Vec::new();
    loop {
        let c = *chars.get(i).ok_or("a class `[` is not closed")?;
        i += 1;
        let lo = match c {
            ']' => break,
            '[' => return Err("a literal `[` inside a class must be escaped".into()),
            '\\' => {
                let e = *chars
                    .get(i)
                    .ok_or("the pattern ends in the middle of an escape")?;
                i += 1;
                match shorthand(e) {
                    Some((false, set)) => {
                        ranges.extend_from_slice(set);
                        continue;
                    }
                    Some((true, _)) => {
                        return Err(format!("`\\{e}` inside a class is not supported"));
                    }
                    None => escaped_char(e)
                        .ok_or_else(|| format!("the escape `\\{e}` is not supported"))?,
                }
            }
            c => c,
        };
        // A range `a-z`, unless the `-` is last (`[a-]`).
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&n| n != ']') {
            let hi = match chars[i + 1] {
                '\\' => {
                    let e = *chars
                        .get(i + 2)
                        .ok_or("the pattern ends in the middle of an escape")?;
                    i += 1;
                    escaped_char(e)
                        .ok_or_else(|| format!("`\\{e}` cannot end a range in a class"))?
                }
                '[' => return Err("a literal `[` inside a class must be escaped".into()),
                h => h,
            };
            i += 2;
            if hi < lo {
                return Err(format!("the class range `{lo}-{hi}` is out of order"));
            }
            ranges.push((lo, hi));
        } else {
            ranges.push((lo, lo));
        }
    }
    Ok((Atom::Class { negated, ranges }, i))
}

/// Parses an optional quantifier at `i`: (min, max, index after it).
fn parse_quantifier(chars: &[char], i: usize) -> Result<(usize, Option<usize>, usize), String> {
    match chars.get(i) {
        Some('?') => Ok((0, Some(1), i + 1)),
        Some('*') => Ok((0, None, i + 1)),
        Some('+') => Ok((1, None, i + 1)),
        Some('{') => {
            let close = chars[i..]
                .iter()
                .position(|&c| c == '}')
                .map(|p| i + p)
                .ok_or("a `{` quantifier is not closed (escape a literal `{`)")?;
            let body: String = chars[i + 1..close].iter().collect();
            let number = |s: &str| -> Result<usize, String> {
                if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!(
                        "`{{{body}}}` is not a quantifier like {{2}} or {{2,5}}"
                    ));
                }
                let n: usize = s
                    .parse()
                    .map_err(|_| format!("`{{{body}}}` is too large"))?;
                if n > MAX_REPEAT {
                    return Err(format!("repetition counts are limited to {MAX_REPEAT}"));
                }
                Ok(n)
            };
            let (min, max) = match body.split_once(',') {
                None => {
                    let n = number(&body)?;
                    (n, Some(n))
                }
                Some((lo, "")) => (number(lo)?, None),
                Some((lo, hi)) => (number(lo)?, Some(number(hi)?)),
            };
            if max.is_some_and(|m| m < min) {
                return Err(format!("`{{{body}}}` has its bounds out of order"));
            }
            Ok((min, max, close + 1))
        }
        _ => Ok((1, Some(1), i)),
    }
}

#[cfg(test)]
mod tests {
    use super::Pattern;

    fn is_match(p: &str, s: &str) -> bool {
        Pattern::parse(p)
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .is_match(s)
    }

    #[test]
    fn anchors_decide_where_a_match_may_be() {
        assert!(is_match("^[A-Z]{3}$", "EUR"));
        assert!(!is_match("^[A-Z]{3}$", "EURO"));
        assert!(!is_match("^[A-Z]{3}$", "eur"));
        assert!(!is_match("^[A-Z]{3}$", "EU"));
        // Unanchored: anywhere, as `RegExp.test` does.
        assert!(is_match("[A-Z]{3}", "xxEURxx"));
        assert!(is_match("^ab", "abc"));
        assert!(!is_match("^ab", "cab"));
        assert!(is_match("bc$", "abc"));
        assert!(!is_match("bc$", "bca"));
        assert!(is_match("", "anything"));
        assert!(is_match("^$", ""));
        assert!(!is_match("^$", "x"));
    }

    #[test]
    fn quantifiers_repeat_and_backtrack() {
        assert!(is_match("^a?b$", "b"));
        assert!(is_match("^a?b$", "ab"));
        assert!(!is_match("^a?b$", "aab"));
        assert!(is_match("^a*$", ""));
        assert!(is_match("^a*$", "aaaa"));
        assert!(!is_match("^a+$", ""));
        assert!(is_match("^a+a$", "aa")); // backtracks one
        assert!(!is_match("^a+a$", "a"));
        assert!(is_match("^a{2,}$", "aaa"));
        assert!(!is_match("^a{2,}$", "a"));
        assert!(is_match("^a{1,2}b{0,1}$", "aab"));
        assert!(!is_match("^a{1,2}$", "aaa"));
        assert!(is_match("^.*x.*y$", "..x..y"));
        // Many failing stars stay fast (failed states are remembered).
        let long = "a".repeat(2000);
        assert!(!is_match("a*a*a*a*a*b", &long));
    }

    #[test]
    fn classes_escapes_and_the_dot() {
        assert!(is_match(r"^\d+$", "2026"));
        assert!(!is_match(r"^\d+$", "20x6"));
        assert!(is_match(r"^\w+$", "snake_Case9"));
        assert!(!is_match(r"^\w+$", "no-dash"));
        assert!(is_match(r"^\S+$", "nospace"));
        assert!(!is_match(r"^\S+$", "a space"));
        assert!(is_match(r"^a\sb$", "a\tb"));
        assert!(is_match(r"^[^/]", "relative/path"));
        assert!(!is_match(r"^[^/]", "/absolute"));
        assert!(is_match(r"^[a-z0-9_-]+$", "a-b_c9"));
        assert!(!is_match(r"^[a-z0-9_-]+$", "A"));
        assert!(is_match(r"^[\d.]+$", "1.25"));
        assert!(is_match(r"^\+\d{7,15}$", "+48600100200"));
        assert!(!is_match(r"^\+\d{7,15}$", "48600100200"));
        assert!(is_match(r"^a\.b$", "a.b"));
        assert!(!is_match(r"^a\.b$", "axb"));
        assert!(is_match("^a.b$", "axb"));
        assert!(!is_match("^a.b$", "a\nb"));
        assert!(is_match(r"^[\]]$", "]"));
        assert!(is_match("^ł+$", "łł")); // characters, not bytes
    }

    #[test]
    fn constructs_outside_the_subset_are_refused() {
        for bad in [
            "(ab)", "a|b", "a)", "*a", "+", "a{2", "a{x}", "a{3,2}", "a{99999}", r"\b", r"\u0041",
            r"[\D]", "[z-a]", "[abc", "a^b", "a$b", "a*?", "a+?", "a]", "[]a]", "[^]", "\\",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad} should be refused");
        }
        // A single `?` after a plain atom is a quantifier, not laziness.
        assert!(is_match("^ab?c$", "ac"));
    }
}
