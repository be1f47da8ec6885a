//! Money: integer nanoTON only (1 TON = 10^9 nanoTON).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub const NANOTON_PER_TON: u64 = 1_000_000_000;

/// An amount of nanoTON. In JSON it is a decimal string, since amounts can
/// pass 2^53 and JavaScript numbers would round them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NanoTon(pub u64);

impl NanoTon {
    pub const ZERO: NanoTon = NanoTon(0);

    pub fn checked_add(self, other: NanoTon) -> Option<NanoTon> {
        self.0.checked_add(other.0).map(NanoTon)
    }

    pub fn checked_sub(self, other: NanoTon) -> Option<NanoTon> {
        self.0.checked_sub(other.0).map(NanoTon)
    }

    /// Parses a TON amount written in decimal ("1.5" is 1 500 000 000 nanoTON).
    pub fn from_ton_str(text: &str) -> Option<NanoTon> {
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.len() > 9 {
            return None;
        }
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || !digits(fraction) {
            return None;
        }
        let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
        let fraction: u64 = if fraction.is_empty() { 0 } else { format!("{fraction:0<9}").parse().ok()? };
        whole.checked_mul(NANOTON_PER_TON)?.checked_add(fraction).map(NanoTon)
    }
}

impl std::fmt::Display for NanoTon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:09} TON", self.0 / NANOTON_PER_TON, self.0 % NANOTON_PER_TON)
    }
}

impl Serialize for NanoTon {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for NanoTon {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(serde::de::Error::custom("an amount is a string of decimal digits (nanoTON)"));
        }
        text.parse().map(NanoTon).map_err(|_| serde::de::Error::custom("amount out of range"))
    }
}

/// A provider's prices per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prices {
    pub prompt_per_million: NanoTon,
    pub completion_per_million: NanoTon,
}

impl Prices {
    /// The price of a request, rounded up to a whole nanoTON; `None` on overflow.
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> Option<NanoTon> {
        let prompt = u128::from(prompt_tokens).checked_mul(u128::from(self.prompt_per_million.0))?;
        let completion = u128::from(completion_tokens).checked_mul(u128::from(self.completion_per_million.0))?;
        u64::try_from(prompt.checked_add(completion)?.div_ceil(1_000_000)).ok().map(NanoTon)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ton_amounts_exactly() {
        assert_eq!(NanoTon::from_ton_str("1.5"), Some(NanoTon(1_500_000_000)));
        assert_eq!(NanoTon::from_ton_str("0.000000001"), Some(NanoTon(1)));
        assert_eq!(NanoTon::from_ton_str("12"), Some(NanoTon(12_000_000_000)));
        for bad in ["", ".", "1.0000000001", "-1", "1e9", "1,5", "99999999999999999999"] {
            assert_eq!(NanoTon::from_ton_str(bad), None, "{bad}");
        }
        assert_eq!(NanoTon(1_500_000_001).to_string(), "1.500000001 TON");
    }

    #[test]
    fn json_amounts_are_strings() {
        assert_eq!(serde_json::to_string(&NanoTon(42)).unwrap(), "\"42\"");
        assert_eq!(serde_json::from_str::<NanoTon>("\"42\"").unwrap(), NanoTon(42));
        assert!(serde_json::from_str::<NanoTon>("42").is_err());
        assert!(serde_json::from_str::<NanoTon>("\"-1\"").is_err());
    }

    #[test]
    fn cost_rounds_up_and_never_overflows_silently() {
        let prices = Prices { prompt_per_million: NanoTon(1_000_000), completion_per_million: NanoTon(3_000_001) };
        assert_eq!(prices.cost(1, 0), Some(NanoTon(1)));
        assert_eq!(prices.cost(0, 1), Some(NanoTon(4)));
        assert_eq!(prices.cost(1_000_000, 1_000_000), Some(NanoTon(4_000_001)));
        let huge = Prices { prompt_per_million: NanoTon(u64::MAX), completion_per_million: NanoTon(u64::MAX) };
        assert_eq!(huge.cost(u64::MAX, u64::MAX), None);
    }
}
