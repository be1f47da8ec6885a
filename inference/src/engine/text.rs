//! Turning generated token bytes into text that is safe to stream.
//!
//! Tokens are byte pieces: a multi-byte character can be split across two
//! tokens, and a stop string across many. [`TextStream`] holds back exactly
//! what might still change meaning (an unfinished UTF-8 sequence, a suffix
//! that could become a stop string) and releases the rest at once.

/// Incremental UTF-8 decoding plus stop-string detection for one request.
#[derive(Debug)]
pub struct TextStream {
    stops: Vec<String>,
    /// Bytes of an unfinished UTF-8 sequence from the last piece.
    partial: Vec<u8>,
    /// Decoded text held back because it may be the start of a stop string.
    held: String,
}

/// What one pushed piece produced.
#[derive(Debug, PartialEq, Eq)]
pub struct Pushed {
    /// Text that can be shown to the client now (may be empty).
    pub text: String,
    /// True when a stop string was found: `text` ends before it and the
    /// request is finished.
    pub stopped: bool,
}

impl TextStream {
    pub fn new(stops: Vec<String>) -> Self {
        let stops = stops.into_iter().filter(|s| !s.is_empty()).collect();
        Self { stops, partial: Vec::new(), held: String::new() }
    }

    /// Adds the bytes of one token.
    pub fn push(&mut self, bytes: &[u8]) -> Pushed {
        self.partial.extend_from_slice(bytes);
        let decoded = take_valid_utf8(&mut self.partial);
        self.held.push_str(&decoded);

        if let Some(at) = self.earliest_stop() {
            let text = self.held[..at].to_owned();
            self.held.clear();
            self.partial.clear();
            return Pushed { text, stopped: true };
        }
        let keep = self.stop_prefix_suffix_len();
        let release = self.held.len() - keep;
        let text = self.held[..release].to_owned();
        self.held.replace_range(..release, "");
        Pushed { text, stopped: false }
    }

    /// Everything still held back, for when generation ends without a stop
    /// string (length limit, end of generation token).
    pub fn finish(&mut self) -> String {
        let mut rest = std::mem::take(&mut self.held);
        if !self.partial.is_empty() {
            rest.push_str(&String::from_utf8_lossy(&self.partial));
            self.partial.clear();
        }
        rest
    }

    fn earliest_stop(&self) -> Option<usize> {
        self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min()
    }

    /// Length of the longest suffix of `held` that is a proper prefix of a
    /// stop string, so it must wait for more text.
    fn stop_prefix_suffix_len(&self) -> usize {
        let mut longest = 0;
        for stop in &self.stops {
            let max = stop.len().saturating_sub(1).min(self.held.len());
            for len in (longest + 1..=max).rev() {
                let start = self.held.len() - len;
                if self.held.is_char_boundary(start) && stop.starts_with(&self.held[start..]) {
                    longest = len;
                    break;
                }
            }
        }
        longest
    }
}

/// Removes and returns the longest decodable prefix of `bytes`; invalid
/// sequences become U+FFFD, an unfinished one at the end stays in `bytes`.
fn take_valid_utf8(bytes: &mut Vec<u8>) -> String {
    let mut out = String::new();
    let mut rest: &[u8] = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                rest = &[];
                break;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                // Safe by construction: `valid_up_to` marks valid UTF-8.
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                match e.error_len() {
                    Some(bad) => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        rest = &after[bad..];
                    }
                    None => {
                        rest = after;
                        break;
                    }
                }
            }
        }
    }
    let keep = rest.to_vec();
    *bytes = keep;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&[u8]]) -> (String, bool) {
        let mut stream = TextStream::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for piece in pieces {
            let pushed = stream.push(piece);
            out.push_str(&pushed.text);
            if pushed.stopped {
                return (out, true);
            }
        }
        out.push_str(&stream.finish());
        (out, false)
    }

    #[test]
    fn passes_plain_text_through_immediately() {
        let mut stream = TextStream::new(vec![]);
        assert_eq!(stream.push(b"Hello").text, "Hello");
        assert_eq!(stream.push(b" world").text, " world");
    }

    #[test]
    fn joins_a_character_split_across_tokens() {
        let euro = "€".as_bytes();
        let mut stream = TextStream::new(vec![]);
        assert_eq!(stream.push(&euro[..1]).text, "");
        assert_eq!(stream.push(&euro[1..]).text, "€");
    }

    #[test]
    fn replaces_invalid_bytes() {
        assert_eq!(run(&[], &[b"a\xffb"]).0, "a\u{fffd}b");
        assert_eq!(run(&[], &[b"a\xe2\x82"]).0, "a\u{fffd}");
    }

    #[test]
    fn stops_at_a_stop_string_split_across_tokens() {
        assert_eq!(run(&["END"], &[b"one E", b"N", b"D two"]), ("one ".into(), true));
    }

    #[test]
    fn releases_held_text_that_did_not_become_a_stop() {
        let mut stream = TextStream::new(vec!["END".into()]);
        assert_eq!(stream.push(b"x E").text, "x ");
        assert_eq!(stream.push(b"N").text, "");
        assert_eq!(stream.push(b"d").text, "ENd");
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        assert_eq!(run(&["b", "a"], &[b"xxab"]), ("xx".into(), true));
    }

    #[test]
    fn finish_flushes_held_prefix() {
        assert_eq!(run(&["END"], &[b"tail EN"]), ("tail EN".into(), false));
    }

    #[test]
    fn held_suffix_respects_char_boundaries() {
        assert_eq!(run(&["éa"], &["xé".as_bytes(), b"b"]), ("xéb".into(), false));
    }
}
