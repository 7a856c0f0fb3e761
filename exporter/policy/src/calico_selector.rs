//! The Calico selector language (`projectcalico.org/v3` `selector`,
//! `namespaceSelector`, `serviceAccountSelector` and rule selectors),
//! parsed once into an expression tree and evaluated against a label
//! lookup in three-valued logic.
//!
//! Grammar, as Calico's parser accepts it:
//!
//! ```text
//! expr    := and ( "||" and )*
//! and     := unary ( "&&" unary )*
//! unary   := "!" unary | "(" expr ")" | "all()" | "global()" | "has(" key ")"
//!          | key ( "==" | "!=" ) string
//!          | key [ "not" ] "in" "{" [ string ( "," string )* ] "}"
//!          | key ( "contains" | "starts with" | "ends with" ) string
//! string  := "'" chars "'" | '"' chars '"'
//! key     := [A-Za-z0-9_./-]+
//! ```
//!
//! An empty selector selects everything. `!=` and `not in` are true when
//! the label is absent. Syntax errors carry the byte position. No IO.

use std::fmt;

use crate::matching::Tri;

/// A parsed selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalicoSelector {
    expr: Expr,
    source: Box<str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    All,
    Global,
    Has(Box<str>),
    Equals(Box<str>, Box<str>),
    NotEquals(Box<str>, Box<str>),
    In(Box<str>, Box<[Box<str>]>),
    NotIn(Box<str>, Box<[Box<str>]>),
    Contains(Box<str>, Box<str>),
    StartsWith(Box<str>, Box<str>),
    EndsWith(Box<str>, Box<str>),
    Not(Box<Expr>),
    And(Box<[Expr]>),
    Or(Box<[Expr]>),
}

/// A label as the evaluator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label<'a> {
    Value(&'a str),
    Absent,
    /// The labels of this kind of object are not known (a service
    /// account's, a node's): the answer depends on them.
    Unknown,
}

/// A syntax error: what was expected, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector at position {position}: {message}")]
pub struct SelectorSyntaxError {
    /// Byte offset into the selector text.
    pub position: usize,
    pub message: String,
}

impl fmt::Display for CalicoSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl CalicoSelector {
    /// `all()`.
    pub fn all() -> Self {
        CalicoSelector {
            expr: Expr::All,
            source: "all()".into(),
        }
    }

    pub fn parse(text: &str) -> Result<Self, SelectorSyntaxError> {
        let mut p = Parser {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        };
        p.skip_space();
        if p.pos == p.bytes.len() {
            return Ok(CalicoSelector {
                expr: Expr::All,
                source: text.into(),
            });
        }
        let expr = p.or()?;
        p.skip_space();
        if p.pos != p.bytes.len() {
            return Err(p.error("unexpected text after the expression"));
        }
        Ok(CalicoSelector {
            expr,
            source: text.into(),
        })
    }

    /// Selects everything (`""` or `all()`).
    pub fn is_all(&self) -> bool {
        self.expr == Expr::All
    }

    /// The labels the selector requires to have one of some values: the
    /// selector itself, or the terms of its top-level `&&`, that are
    /// `key == 'v'` or `key in {…}`. When any such label is absent or has
    /// another value, the selector answers `No` (whatever its other terms
    /// say: `No && x` is `No` in three-valued logic too).
    pub(crate) fn required(&self) -> Vec<(&str, Vec<&str>)> {
        fn term(e: &Expr) -> Option<(&str, Vec<&str>)> {
            match e {
                Expr::Equals(k, v) => Some((&**k, vec![&**v])),
                Expr::In(k, set) => Some((&**k, set.iter().map(|s| &**s).collect())),
                _ => None,
            }
        }
        match &self.expr {
            Expr::And(items) => items.iter().filter_map(term).collect(),
            e => term(e).into_iter().collect(),
        }
    }

    /// Evaluate against a lookup. `global`: the object is not namespaced
    /// (what `global()` tests).
    pub(crate) fn eval<'a>(&self, global: bool, label: &impl Fn(&str) -> Label<'a>) -> Tri {
        eval(&self.expr, global, label)
    }

    /// Evaluate for a plain label map with no unknowns.
    pub fn matches(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        self.eval(false, &|k| match labels.get(k) {
            Some(v) => Label::Value(v),
            None => Label::Absent,
        }) == Tri::Yes
    }
}

fn eval<'a>(e: &Expr, global: bool, label: &impl Fn(&str) -> Label<'a>) -> Tri {
    // A comparison with an unknown label is unknown; with an absent one it
    // follows Calico (`!=` and `not in` hold, the others do not).
    let cmp = |key: &str, absent: bool, f: &dyn Fn(&str) -> bool| match label(key) {
        Label::Value(v) => Tri::from_bool(f(v)),
        Label::Absent => Tri::from_bool(absent),
        Label::Unknown => Tri::Unknown,
    };
    match e {
        Expr::All => Tri::Yes,
        Expr::Global => Tri::from_bool(global),
        Expr::Has(k) => cmp(k, false, &|_| true),
        Expr::Equals(k, v) => cmp(k, false, &|x| x == &**v),
        Expr::NotEquals(k, v) => cmp(k, true, &|x| x != &**v),
        Expr::In(k, set) => cmp(k, false, &|x| set.iter().any(|s| &**s == x)),
        Expr::NotIn(k, set) => cmp(k, true, &|x| set.iter().all(|s| &**s != x)),
        Expr::Contains(k, s) => cmp(k, false, &|x| x.contains(&**s)),
        Expr::StartsWith(k, s) => cmp(k, false, &|x| x.starts_with(&**s)),
        Expr::EndsWith(k, s) => cmp(k, false, &|x| x.ends_with(&**s)),
        Expr::Not(inner) => eval(inner, global, label).not(),
        Expr::And(items) => items
            .iter()
            .fold(Tri::Yes, |acc, x| acc.and(|| eval(x, global, label))),
        Expr::Or(items) => items
            .iter()
            .fold(Tri::No, |acc, x| acc.or(|| eval(x, global, label))),
    }
}

struct Parser<'t> {
    text: &'t str,
    bytes: &'t [u8],
    pos: usize,
}

fn is_key_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'/' | b'-')
}

impl<'t> Parser<'t> {
    fn error(&self, message: impl Into<String>) -> SelectorSyntaxError {
        SelectorSyntaxError {
            position: self.pos,
            message: message.into(),
        }
    }

    fn skip_space(&mut self) {
        while self.pos < self.bytes.len() && self.bytes[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    /// Consume `token` (after spaces) if it is next.
    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        if self.bytes[self.pos..].starts_with(token.as_bytes()) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    /// Consume a keyword: `token` not followed by a key character.
    fn eat_word(&mut self, word: &str) -> bool {
        self.skip_space();
        let end = self.pos + word.len();
        if self.bytes[self.pos..].starts_with(word.as_bytes())
            && self.bytes.get(end).is_none_or(|c| !is_key_byte(*c))
        {
            self.pos = end;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &str) -> Result<(), SelectorSyntaxError> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(self.error(format!("expected {token:?}")))
        }
    }

    fn or(&mut self) -> Result<Expr, SelectorSyntaxError> {
        let mut items = vec![self.and()?];
        while self.eat("||") {
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items.into())
        })
    }

    fn and(&mut self) -> Result<Expr, SelectorSyntaxError> {
        let mut items = vec![self.unary()?];
        while self.eat("&&") {
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items.into())
        })
    }

    fn unary(&mut self) -> Result<Expr, SelectorSyntaxError> {
        self.skip_space();
        if self.pos == self.bytes.len() {
            return Err(self.error("unexpected end of selector, expected an expression"));
        }
        // `!` but not the start of `!=` (which needs a key before it).
        if self.bytes[self.pos] == b'!' {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.eat("(") {
            let inner = self.or()?;
            self.expect(")")?;
            return Ok(inner);
        }
        let start = self.pos;
        let key = self.key()?;
        // Functions: the name directly followed by `(`.
        match key {
            "all" | "global" | "has" if self.eat("(") => {
                return match key {
                    "all" => self.expect(")").map(|()| Expr::All),
                    "global" => self.expect(")").map(|()| Expr::Global),
                    _ => {
                        let k = self.key()?;
                        self.expect(")")?;
                        Ok(Expr::Has(k.into()))
                    }
                };
            }
            _ => {}
        }
        let key: Box<str> = key.into();
        if self.eat("==") {
            return Ok(Expr::Equals(key, self.string()?));
        }
        if self.eat("!=") {
            return Ok(Expr::NotEquals(key, self.string()?));
        }
        if self.eat_word("in") {
            return Ok(Expr::In(key, self.set()?));
        }
        if self.eat_word("not") {
            if !self.eat_word("in") {
                return Err(self.error("expected \"in\" after \"not\""));
            }
            return Ok(Expr::NotIn(key, self.set()?));
        }
        if self.eat_word("contains") {
            return Ok(Expr::Contains(key, self.string()?));
        }
        if self.eat_word("starts") {
            if !self.eat_word("with") {
                return Err(self.error("expected \"with\" after \"starts\""));
            }
            return Ok(Expr::StartsWith(key, self.string()?));
        }
        if self.eat_word("ends") {
            if !self.eat_word("with") {
                return Err(self.error("expected \"with\" after \"ends\""));
            }
            return Ok(Expr::EndsWith(key, self.string()?));
        }
        self.skip_space();
        if self.pos == self.bytes.len() {
            return Err(self.error(format!(
                "unexpected end of selector after label {:?}, expected an operator",
                &self.text[start..start + key.len()]
            )));
        }
        Err(self
            .error("expected an operator (==, !=, in, not in, contains, starts with, ends with)"))
    }

    fn key(&mut self) -> Result<&'t str, SelectorSyntaxError> {
        self.skip_space();
        let start = self.pos;
        while self.pos < self.bytes.len() && is_key_byte(self.bytes[self.pos]) {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.error(if start == self.bytes.len() {
                "unexpected end of selector, expected a label key".to_string()
            } else {
                format!(
                    "unexpected {:?}, expected a label key",
                    self.text[start..].chars().next().unwrap_or(' ')
                )
            }));
        }
        let text: &'t str = self.text;
        Ok(&text[start..self.pos])
    }

    fn string(&mut self) -> Result<Box<str>, SelectorSyntaxError> {
        self.skip_space();
        let quote = match self.bytes.get(self.pos) {
            Some(q @ (b'"' | b'\'')) => *q,
            _ => return Err(self.error("expected a quoted string")),
        };
        let open = self.pos;
        self.pos += 1;
        let start = self.pos;
        while self.pos < self.bytes.len() && self.bytes[self.pos] != quote {
            self.pos += 1;
        }
        if self.pos == self.bytes.len() {
            self.pos = open;
            return Err(self.error("unterminated string"));
        }
        let s = &self.text[start..self.pos];
        self.pos += 1;
        Ok(s.into())
    }

    fn set(&mut self) -> Result<Box<[Box<str>]>, SelectorSyntaxError> {
        self.expect("{")?;
        let mut items = Vec::new();
        if self.eat("}") {
            return Ok(items.into());
        }
        loop {
            items.push(self.string()?);
            if self.eat("}") {
                return Ok(items.into());
            }
            self.expect(",")?;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn matching_table() {
        let web = labels(&[("app", "web"), ("tier", "frontend"), ("team", "a")]);
        let db = labels(&[("app", "db"), ("tier", "backend")]);
        let bare = labels(&[]);
        // (selector, matches web, matches db, matches no labels)
        let cases = [
            ("", true, true, true),
            ("all()", true, true, true),
            ("  all( )  ", true, true, true),
            ("global()", false, false, false),
            ("app == 'web'", true, false, false),
            ("app == \"web\"", true, false, false),
            ("app=='web'", true, false, false),
            ("app != 'web'", false, true, true),
            ("has(team)", true, false, false),
            ("!has(team)", false, true, true),
            ("! has(team)", false, true, true),
            ("app in {'web', 'db'}", true, true, false),
            ("app in {}", false, false, false),
            ("app not in {'web'}", false, true, true),
            ("tier contains 'end'", true, true, false),
            ("tier starts with 'front'", true, false, false),
            ("tier ends with 'end'", true, true, false),
            ("app == 'web' && tier == 'frontend'", true, false, false),
            ("app == 'web' || app == 'db'", true, true, false),
            (
                "app == 'db' || has(team) && tier == 'x'",
                false,
                true,
                false,
            ),
            (
                "(app == 'db' || has(team)) && tier == 'backend'",
                false,
                true,
                false,
            ),
            ("!(app == 'web')", false, true, true),
            ("!app == 'web'", false, true, true),
            ("all() && !has(app)", false, false, true),
            ("projectcalico.org/name == 'x'", false, false, false),
            ("a.b/c-d_e == 'x' || has(x.y/z)", false, false, false),
        ];
        for (i, (text, w, d, n)) in cases.into_iter().enumerate() {
            let s = CalicoSelector::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                (s.matches(&web), s.matches(&db), s.matches(&bare)),
                (w, d, n),
                "case {i}: {text}"
            );
        }
    }

    #[test]
    fn global_is_true_only_for_non_namespaced_objects() {
        let s = CalicoSelector::parse("global()").expect("valid");
        assert_eq!(s.eval(true, &|_| Label::Absent), Tri::Yes);
        assert_eq!(s.eval(false, &|_| Label::Absent), Tri::No);
    }

    #[test]
    fn unknown_labels_give_unknown_unless_decided() {
        let unknown = |k: &str| {
            if k == "app" {
                Label::Value("web")
            } else {
                Label::Unknown
            }
        };
        let cases = [
            ("app == 'web'", Tri::Yes),
            ("team == 'a'", Tri::Unknown),
            ("app == 'web' && team == 'a'", Tri::Unknown),
            ("app == 'db' && team == 'a'", Tri::No),
            ("app == 'web' || team == 'a'", Tri::Yes),
            ("!has(team)", Tri::Unknown),
        ];
        for (text, want) in cases {
            let s = CalicoSelector::parse(text).expect("valid");
            assert_eq!(s.eval(false, &unknown), want, "{text}");
        }
    }

    #[test]
    fn syntax_errors_carry_the_position() {
        // (selector, position, part of the message)
        let cases = [
            ("app ==", 6, "expected a quoted string"),
            ("app == web", 7, "expected a quoted string"),
            ("app == 'web", 7, "unterminated string"),
            ("app = 'web'", 4, "expected an operator"),
            ("app", 3, "expected an operator"),
            ("app == 'a' &&", 13, "unexpected end of selector"),
            (
                "app == 'a' & b == 'c'",
                11,
                "unexpected text after the expression",
            ),
            ("(app == 'a'", 11, "expected \")\""),
            ("app == 'a')", 10, "unexpected text after the expression"),
            ("has(app", 7, "expected \")\""),
            ("has()", 4, "expected a label key"),
            ("app in {'a' 'b'}", 12, "expected \",\""),
            ("app in 'a'", 7, "expected \"{\""),
            ("app not 'a'", 8, "expected \"in\" after \"not\""),
            ("app starts 'a'", 11, "expected \"with\""),
            ("== 'a'", 0, "expected a label key"),
            ("app == 'a' || ", 14, "unexpected end of selector"),
            ("app notin {'web'}", 4, "expected an operator"),
            ("all(", 4, "expected \")\""),
        ];
        for (text, position, message) in cases {
            let e = CalicoSelector::parse(text).expect_err(text);
            assert_eq!(e.position, position, "{text}: {e}");
            assert!(e.message.contains(message), "{text}: {e}");
        }
    }
}
