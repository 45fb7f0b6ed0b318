//! Glob patterns for rule scopes: `*` matches any run of characters, `?` one
//! character; everything else is literal. Compiled to a regex-automata DFA-backed
//! regex so matching is linear.

use regex_automata::meta::Regex;

/// A compiled glob.
#[derive(Debug, Clone)]
pub struct Glob {
    re: Regex,
}

impl Glob {
    /// Compiles `pattern` (case-sensitive).
    pub fn new(pattern: &str) -> Result<Self, String> {
        Self::build(pattern, false)
    }

    /// Compiles `pattern`, ignoring ASCII case (for host names).
    pub fn new_folded(pattern: &str) -> Result<Self, String> {
        Self::build(pattern, true)
    }

    fn build(pattern: &str, fold: bool) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("empty pattern".into());
        }
        let mut re = String::from(if fold { "(?i)^" } else { "^" });
        for c in pattern.chars() {
            match c {
                '*' => re.push_str("(?s:.*)"),
                '?' => re.push_str("(?s:.)"),
                c => re.push_str(&regex_escape(c)),
            }
        }
        re.push('$');
        let re = Regex::new(&re).map_err(|e| e.to_string())?;
        Ok(Self { re })
    }

    /// Whether `text` matches as a whole.
    pub fn is_match(&self, text: &str) -> bool {
        self.re.is_match(text)
    }
}

fn regex_escape(c: char) -> String {
    if r"\.+*?()|[]{}^$#&-~".contains(c) {
        format!("\\{c}")
    } else {
        c.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_and_question_marks() {
        let g = Glob::new("$.messages[*].content").unwrap();
        assert!(g.is_match("$.messages[3].content"));
        assert!(!g.is_match("$.messages[3].content[0].text"));
        let h = Glob::new_folded("*.anthropic.com").unwrap();
        assert!(h.is_match("API.Anthropic.com"));
        assert!(!h.is_match("anthropic.com"));
        assert!(Glob::new("ver?ion").unwrap().is_match("version"));
        assert!(Glob::new("/home/ü*").unwrap().is_match("/home/ümit/x"));
    }
}
