//! A JSON scanner that checks grammar and finds where values end without
//! building them. It accepts exactly what serde_json's `IgnoredAny` accepts (no
//! UTF-8 check inside strings, no nesting limit) and skips long strings many
//! bytes at a time, so checking a large body costs far less than hashing it.

/// Whether `b` ends a run of plain string bytes.
fn is_special(b: u8) -> bool {
    (b == b'"') | (b == b'\\') | (b < 0x20)
}

/// Where the first special byte of `word` (8 bytes in memory order) is, if any.
/// For each kind of special byte, the lowest flag is exact; flags above it may be
/// false, so the lowest flag of all three is the first special byte.
fn first_special(word: [u8; 8]) -> Option<usize> {
    const ONES: u64 = u64::MAX / 255;
    const HIGH_BITS: u64 = ONES << 7;
    let word = u64::from_le_bytes(word);
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH_BITS;
    let found = below(word, 0x20)
        | below(word ^ (ONES * u64::from(b'"')), 1)
        | below(word ^ (ONES * u64::from(b'\\')), 1);
    (found != 0).then(|| found.trailing_zeros() as usize / 8)
}

/// Counts plain bytes 8 at a time, over at most `words` words. Says whether a
/// special byte ended the run (then the count is where it is).
fn plain_words(bytes: &[u8], words: usize) -> (usize, bool) {
    let mut len = 0;
    for word in bytes.chunks_exact(8).take(words) {
        let word = <[u8; 8]>::try_from(word).unwrap_or_default();
        if let Some(at) = first_special(word) {
            return (len + at, true);
        }
        len += 8;
    }
    (len, false)
}

/// How many whole `N`-byte blocks at the start of `bytes` are plain, in bytes.
/// Each block is tested as a whole, with no early exit inside it, so the
/// compiler turns the test into vector compares.
fn plain_blocks<const N: usize>(bytes: &[u8]) -> usize {
    let plain = |block: &&[u8]| !block.iter().fold(false, |any, &b| any | is_special(b));
    bytes.chunks_exact(N).take_while(plain).count() * N
}

/// How many bytes at the start of `bytes` are plain string content. Most
/// strings (keys, ids, times) end within two words; longer runs go 64 bytes at
/// a time, then word by word, and the last few bytes of the input one by one.
fn plain_len(bytes: &[u8]) -> usize {
    let (mut len, ended) = plain_words(bytes, 2);
    if ended {
        return len;
    }
    len += plain_blocks::<64>(&bytes[len..]);
    let (more, ended) = plain_words(&bytes[len..], usize::MAX);
    len += more;
    if ended {
        return len;
    }
    let rest = &bytes[len..];
    len + rest
        .iter()
        .position(|&b| is_special(b))
        .unwrap_or(rest.len())
}

/// A cursor over JSON text. Every method returns `None` on a grammar error.
#[derive(Debug)]
pub(super) struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// The closing brackets of the containers a skipped value is inside.
    open: Vec<u8>,
}

impl<'a> Scanner<'a> {
    /// Starts at the beginning of `bytes`.
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            pos: 0,
            open: Vec::new(),
        }
    }

    /// The text from `start` to the current position.
    pub(super) fn since(&self, start: usize) -> &'a [u8] {
        &self.bytes[start..self.pos]
    }

    /// Skips whitespace; the position and byte that follow (`None` at the end).
    pub(super) fn peek(&mut self) -> (usize, Option<u8>) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
        (self.pos, self.bytes.get(self.pos).copied())
    }

    /// Consumes `byte` after whitespace, if it is next.
    pub(super) fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek().1 == Some(byte);
        self.pos += usize::from(found);
        found
    }

    /// Whether only whitespace is left.
    pub(super) fn at_end(&mut self) -> bool {
        self.peek().1.is_none()
    }

    /// Reads a string after whitespace; whether it contains escapes.
    pub(super) fn string(&mut self) -> Option<bool> {
        if !self.eat(b'"') {
            return None;
        }
        let mut escaped = false;
        loop {
            self.pos += plain_len(&self.bytes[self.pos..]);
            match self.bytes.get(self.pos)? {
                b'"' => {
                    self.pos += 1;
                    return Some(escaped);
                }
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                _ => return None,
            }
        }
    }

    /// Reads the escape sequence at a backslash. A `\u` escape needs four hex
    /// digits; which code point they name is checked only when decoding.
    fn escape(&mut self) -> Option<()> {
        let len = match self.bytes.get(self.pos + 1..)? {
            [b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't', ..] => 2,
            [b'u', a, b, c, d, ..] if [a, b, c, d].iter().all(|x| x.is_ascii_hexdigit()) => 6,
            _ => return None,
        };
        self.pos += len;
        Some(())
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// Reads a number: `-`, then `0` or a digit run, then an optional fraction
    /// and exponent, each with at least one digit.
    fn number(&mut self) -> Option<()> {
        self.pos += usize::from(self.bytes.get(self.pos) == Some(&b'-'));
        match self.bytes.get(self.pos)? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            (self.digits() > 0).then_some(())?;
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            (self.digits() > 0).then_some(())?;
        }
        // What follows (`01`, `1x`) is checked by the caller, which expects a
        // separator or a closing bracket there.
        Some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.bytes[self.pos..].starts_with(word).then_some(())?;
        self.pos += word.len();
        Some(())
    }

    /// Reads an object member's key and the colon after it.
    fn key(&mut self) -> Option<()> {
        self.string()?;
        self.eat(b':').then_some(())
    }

    /// Skips one value after whitespace, however deeply nested (without recursion).
    pub(super) fn value(&mut self) -> Option<()> {
        self.open.clear();
        loop {
            match self.peek().1? {
                b'"' => {
                    self.string()?;
                }
                b'-' | b'0'..=b'9' => self.number()?,
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                b'[' => {
                    self.pos += 1;
                    if !self.eat(b']') {
                        self.open.push(b']');
                        continue;
                    }
                }
                b'{' => {
                    self.pos += 1;
                    if !self.eat(b'}') {
                        self.open.push(b'}');
                        self.key()?;
                        continue;
                    }
                }
                _ => return None,
            }
            // A value is complete: close the containers it completes, then go on
            // to the next element or member, if any.
            loop {
                let Some(&close) = self.open.last() else {
                    return Some(());
                };
                if self.eat(b',') {
                    if close == b'}' {
                        self.key()?;
                    }
                    break;
                }
                self.eat(close).then_some(())?;
                self.open.pop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_runs_stop_at_quotes_backslashes_and_control_characters() {
        for len in [0, 1, 7, 8, 15, 16, 17, 63, 64, 65, 100, 200] {
            let plain: Vec<u8> = (0..len).map(|i| b"x\x7f\xc3\xa9 ~!"[i % 7]).collect();
            assert_eq!(plain_len(&plain), len, "all {len} plain");
            for at in 0..len {
                for special in (0..=0xff).filter(|&b| is_special(b)) {
                    let mut text = plain.clone();
                    text[at] = special;
                    assert_eq!(plain_len(&text), at, "{special:#x} at {at} of {len}");
                }
            }
        }
        assert_eq!(
            plain_len("é\u{7f}".as_bytes()),
            3,
            "non-ASCII bytes are plain"
        );
        // Several special bytes, and bytes just above or below the special ones.
        let mut seed = 1u32;
        let near = b"\x1f\x20\x21\x22\x23\x5b\x5c\x5d\x00\x9f\xa0\xdc\xff";
        for _ in 0..5000 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let len = (seed >> 16) as usize % 150;
            let text: Vec<u8> = (0..len)
                .map(|i| {
                    let r = seed.rotate_left(i as u32 * 7) ^ (i as u32).wrapping_mul(2_654_435_761);
                    if r % 23 == 0 {
                        near[(r >> 8) as usize % near.len()]
                    } else {
                        b'a' + (r % 26) as u8
                    }
                })
                .collect();
            let expected = text.iter().position(|&b| is_special(b)).unwrap_or(len);
            assert_eq!(plain_len(&text), expected, "{text:?}");
        }
    }

    #[test]
    fn values_end_where_serde_json_ends_them() {
        for (text, end) in [
            (r#""a\"b" ,"#, 6),
            ("-0.5e+3]", 7),
            ("[1,[2,{\"a\":[]}],{}] x", 19),
            ("{ \"k\" : null }", 14),
            ("true,", 4),
        ] {
            let mut s = Scanner::new(text.as_bytes());
            assert_eq!(s.value(), Some(()), "{text}");
            assert_eq!(s.pos, end, "{text}");
        }
    }
}
