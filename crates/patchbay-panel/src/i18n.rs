//! Every string of the panel, once per language: `i18n/en.toml` and
//! `i18n/pl.toml` (SPEC-045 lists both). Keys are dotted names; `{name}`
//! placeholders are filled by [`Lang::fmt`]. A test checks that both files
//! have the same keys and that every key the code asks for exists.

use std::collections::HashMap;
use std::sync::OnceLock;

/// A language of the panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Pl,
}

const EN: &str = include_str!("../i18n/en.toml");
const PL: &str = include_str!("../i18n/pl.toml");

fn table(lang: Lang) -> &'static HashMap<String, String> {
    static TABLES: OnceLock<[HashMap<String, String>; 2]> = OnceLock::new();
    let tables = TABLES.get_or_init(|| [flatten(EN), flatten(PL)]);
    match lang {
        Lang::En => &tables[0],
        Lang::Pl => &tables[1],
    }
}

/// `a.b = "x"` and `[a] b = "x"` both become the key `a.b`.
pub(crate) fn flatten(text: &str) -> HashMap<String, String> {
    fn walk(prefix: &str, t: &toml::Table, out: &mut HashMap<String, String>) {
        for (k, v) in t {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::String(s) => {
                    out.insert(key, s.clone());
                }
                toml::Value::Table(inner) => walk(&key, inner, out),
                _ => {}
            }
        }
    }
    let mut out = HashMap::new();
    if let Ok(t) = text.parse::<toml::Table>() {
        walk("", &t, &mut out);
    }
    out
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Pl];

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Pl => "pl",
        }
    }

    pub fn parse(code: &str) -> Option<Lang> {
        Lang::ALL.into_iter().find(|l| l.code() == code)
    }

    /// The best match for an `Accept-Language` header (English by default).
    pub fn from_accept_language(header: &str) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for part in header.split(',') {
            let mut bits = part.trim().split(';');
            let tag = bits.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = bits
                .find_map(|b| b.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let primary = tag.split('-').next().unwrap_or("");
            if let Some(lang) = Lang::parse(primary)
                && best.is_none_or(|(bq, _)| q > bq)
            {
                best = Some((q, lang));
            }
        }
        best.map_or(Lang::En, |(_, l)| l)
    }

    /// The string for `key`; the key itself when missing (tests keep that from happening).
    pub fn t(self, key: &'static str) -> &'static str {
        table(self).get(key).map_or(key, String::as_str)
    }

    /// The string for `key` with `{name}` placeholders filled.
    pub fn fmt(self, key: &'static str, args: &[(&str, &str)]) -> String {
        let mut s = self.t(key).to_owned();
        for (name, value) in args {
            s = s.replace(&format!("{{{name}}}"), value);
        }
        s
    }

    /// A number with the language's thousands separator.
    pub fn number(self, n: u64) -> String {
        let sep = match self {
            Lang::En => ',',
            Lang::Pl => '\u{a0}',
        };
        let digits = n.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(sep);
            }
            out.push(c);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_languages_have_the_same_keys() {
        let (en, pl) = (flatten(EN), flatten(PL));
        assert!(en.len() > 100, "the English catalog parses");
        let mut missing_pl: Vec<&String> = en.keys().filter(|k| !pl.contains_key(*k)).collect();
        let mut missing_en: Vec<&String> = pl.keys().filter(|k| !en.contains_key(*k)).collect();
        missing_pl.sort();
        missing_en.sort();
        assert!(
            missing_pl.is_empty() && missing_en.is_empty(),
            "only in en: {missing_pl:?}; only in pl: {missing_en:?}"
        );
        let holes = |s: &str| {
            let mut names: Vec<String> = s
                .split('{')
                .skip(1)
                .filter_map(|p| p.split_once('}').map(|(name, _)| name.to_owned()))
                .collect();
            names.sort();
            names
        };
        for (k, v) in &en {
            assert_eq!(holes(v), holes(&pl[k]), "placeholders differ for {k}");
        }
    }

    #[test]
    fn every_key_the_code_uses_exists() {
        let en = flatten(EN);
        // The package folder is the working directory of tests.
        let dir = "src";
        let mut checked = 0;
        let mut stack = vec![std::path::PathBuf::from(dir)];
        while let Some(p) = stack.pop() {
            for entry in std::fs::read_dir(&p).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for marker in [".t(\"", ".fmt(\""] {
                    for part in text.split(marker).skip(1) {
                        let key = part.split('"').next().unwrap();
                        if key.contains('{') {
                            continue;
                        }
                        assert!(
                            en.contains_key(key),
                            "{} uses missing key `{key}`",
                            path.display()
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 50, "the scan found the keys ({checked})");
    }

    #[test]
    fn accept_language_and_numbers() {
        assert_eq!(
            Lang::from_accept_language("pl-PL,pl;q=0.9,en;q=0.8"),
            Lang::Pl
        );
        assert_eq!(Lang::from_accept_language("de-DE, en;q=0.5"), Lang::En);
        assert_eq!(Lang::from_accept_language("en;q=0.4, pl;q=0.7"), Lang::Pl);
        assert_eq!(Lang::from_accept_language(""), Lang::En);
        assert_eq!(Lang::En.number(1_240), "1,240");
        assert_eq!(Lang::En.number(25), "25");
        assert_eq!(Lang::Pl.number(1_000_000), "1\u{a0}000\u{a0}000");
        assert_eq!(
            Lang::En.fmt(
                "logs.showing",
                &[
                    ("from", "1"),
                    ("to", "25"),
                    ("total", &Lang::En.number(1_240))
                ]
            ),
            "Showing 1–25 of 1,240"
        );
    }
}
