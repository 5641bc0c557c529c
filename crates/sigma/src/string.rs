//! Sigma string values: wildcards `*` and `?`, backslash escapes, and the transformations
//! some modifiers apply before matching (`windash`, `base64`, `base64offset`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// One piece of a Sigma string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Piece {
    Literal(String),
    /// `*`: any run of characters, including none.
    AnyMany,
    /// `?`: exactly one character.
    AnyOne,
}

/// A parsed Sigma string: literal runs and wildcards.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct SigmaString {
    pieces: Vec<Piece>,
}

impl SigmaString {
    /// Parses a value as Sigma defines it: `*` and `?` are wildcards, `\*`, `\?` and `\\`
    /// stand for the character itself, and any other backslash is a literal backslash (so
    /// Windows-style paths need no doubling).
    pub fn parse(value: &str) -> SigmaString {
        let mut out = SigmaString::default();
        let mut chars = value.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.peek() {
                    Some(&next @ ('*' | '?' | '\\')) => {
                        chars.next();
                        out.push_char(next);
                    }
                    _ => out.push_char('\\'),
                },
                '*' => out.push(Piece::AnyMany),
                '?' => out.push(Piece::AnyOne),
                other => out.push_char(other),
            }
        }
        out
    }

    /// A string with no wildcards.
    pub fn literal(text: &str) -> SigmaString {
        let mut out = SigmaString::default();
        out.push_str(text);
        out
    }

    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    pub fn has_wildcards(&self) -> bool {
        self.pieces.iter().any(|p| !matches!(p, Piece::Literal(_)))
    }

    /// The text with wildcards dropped; only meaningful when [`Self::has_wildcards`] is false.
    pub fn plain(&self) -> String {
        let mut text = String::new();
        for piece in &self.pieces {
            if let Piece::Literal(s) = piece {
                text.push_str(s);
            }
        }
        text
    }

    /// Adds a piece, merging adjacent literals and collapsing `**` (same meaning, and it keeps
    /// the matcher's classification simple).
    pub fn push(&mut self, piece: Piece) {
        match (self.pieces.last_mut(), piece) {
            (Some(Piece::Literal(last)), Piece::Literal(s)) => last.push_str(&s),
            (Some(Piece::AnyMany), Piece::AnyMany) => {}
            (_, Piece::Literal(s)) if s.is_empty() => {}
            (_, piece) => self.pieces.push(piece),
        }
    }

    fn push_char(&mut self, c: char) {
        match self.pieces.last_mut() {
            Some(Piece::Literal(last)) => last.push(c),
            _ => self.pieces.push(Piece::Literal(c.to_string())),
        }
    }

    fn push_str(&mut self, s: &str) {
        self.push(Piece::Literal(s.to_owned()));
    }

    /// Wraps in `*…*`, `*…` or `…*` for `contains`, `endswith`, `startswith`.
    pub fn wrap(&self, leading: bool, trailing: bool) -> SigmaString {
        let mut out = SigmaString::default();
        if leading {
            out.push(Piece::AnyMany);
        }
        for piece in &self.pieces {
            out.push(piece.clone());
        }
        if trailing {
            out.push(Piece::AnyMany);
        }
        out
    }

    /// Applies `f` to every literal run.
    pub fn map_literals(&self, f: impl Fn(&str) -> String) -> SigmaString {
        let mut out = SigmaString::default();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(s) => out.push(Piece::Literal(f(s))),
                other => out.push(other.clone()),
            }
        }
        out
    }

    /// The `windash` variants: every dash or slash that starts an option (not preceded by a
    /// word character, followed by one) is replaced, all at once, by each of `-`, `/`, en dash,
    /// em dash and horizontal bar, as pySigma does. The original is always among the variants.
    pub fn windash_variants(&self) -> Vec<SigmaString> {
        const DASHES: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];
        let mut variants: Vec<SigmaString> = Vec::new();
        for dash in DASHES {
            let variant = self.map_literals(|s| replace_option_dashes(s, dash));
            if !variants.contains(&variant) {
                variants.push(variant);
            }
        }
        if !variants.contains(self) {
            variants.insert(0, self.clone());
        }
        variants
    }
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Replaces each `-` or `/` that begins an option flag in `s` by `dash`.
fn replace_option_dashes(s: &str, dash: char) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    for (i, &c) in chars.iter().enumerate() {
        let before_ok = i == 0 || !is_word(chars[i - 1]);
        let after_ok = chars.get(i + 1).is_some_and(|&n| is_word(n));
        if matches!(c, '-' | '/') && before_ok && after_ok {
            out.push(dash);
        } else {
            out.push(c);
        }
    }
    out
}

/// `base64`: the standard (padded) encoding of the value's UTF-8 bytes.
pub fn base64(value: &str) -> String {
    STANDARD.encode(value.as_bytes())
}

/// `base64offset`: the three encodings of the value as it may sit at any byte offset inside
/// a larger encoded blob, with the characters that depend on neighbouring bytes cut off.
/// Same offsets as pySigma, so rules behave as their authors tested them.
pub fn base64_offsets(value: &str) -> [String; 3] {
    const START: [usize; 3] = [0, 2, 3];
    // Characters to cut from the end, by (len + shift) % 3; pySigma's (None, -3, -2).
    const END_CUT: [usize; 3] = [0, 3, 2];
    let bytes = value.as_bytes();
    std::array::from_fn(|shift| {
        let mut input = vec![b' '; shift];
        input.extend_from_slice(bytes);
        let encoded = STANDARD.encode(&input);
        let end = encoded
            .len()
            .saturating_sub(END_CUT[(bytes.len() + shift) % 3]);
        encoded
            .get(START[shift]..end)
            .unwrap_or_default()
            .to_owned()
    })
}

/// Case folding used on both sides of every case-insensitive comparison.
pub fn fold(s: &str) -> String {
    if s.is_ascii() {
        s.to_ascii_lowercase()
    } else {
        s.to_lowercase()
    }
}

/// [`fold`] into a reused buffer; the per-event field cache calls this on every event.
pub fn fold_into(s: &str, out: &mut String) {
    out.clear();
    if s.is_ascii() {
        out.push_str(s);
        out.make_ascii_lowercase();
    } else {
        for c in s.chars() {
            out.extend(c.to_lowercase());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_wildcards() {
        let s = SigmaString::parse(r"a\*b*c?\\d\e");
        assert_eq!(
            s.pieces(),
            &[
                Piece::Literal("a*b".into()),
                Piece::AnyMany,
                Piece::Literal("c".into()),
                Piece::AnyOne,
                Piece::Literal(r"\d\e".into()),
            ]
        );
    }

    #[test]
    fn base64offset_matches_pysigma() {
        // Reference values from pySigma for "/bin/sh".
        assert_eq!(
            base64_offsets("/bin/sh"),
            ["L2Jpbi9za", "9iaW4vc2", "vYmluL3No"]
        );
    }

    #[test]
    fn windash_replaces_option_dashes_only() {
        let variants = SigmaString::parse("net -user a-b").windash_variants();
        let texts: Vec<String> = variants.iter().map(SigmaString::plain).collect();
        assert!(texts.contains(&"net /user a-b".to_owned()));
        assert!(texts.contains(&"net \u{2013}user a-b".to_owned()));
        assert_eq!(texts.len(), 5);
    }

    #[test]
    fn fold_matches_unicode_lowercase() {
        let mut out = String::new();
        fold_into("ÄBC", &mut out);
        assert_eq!(out, fold("ÄBC"));
        assert_eq!(out, "äbc");
    }
}
