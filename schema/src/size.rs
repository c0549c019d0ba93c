//! Sizes as people write them, parsed once at the edge: the one size type of the workspace.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// A number of bytes, written like Docker's `--memory`: `512m`, `4g`, `6500k`, `192MiB`, `4096`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(u64);

impl ByteSize {
    pub const fn from_bytes(bytes: u64) -> Self {
        Self(bytes)
    }

    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// The form given to `docker run --memory`.
    pub fn docker_arg(self) -> String {
        format!("{}b", self.0)
    }
}

/// Why a size did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadSize(String);

impl fmt::Display for BadSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadSize {}

impl FromStr for ByteSize {
    type Err = BadSize;

    fn from_str(text: &str) -> Result<Self, BadSize> {
        let lower = text.trim().to_ascii_lowercase();
        let digits_end = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
        let (number, unit) = lower.split_at(digits_end);
        if number.is_empty() {
            return Err(BadSize(format!("bad size `{text}`: expected a number and a unit (e.g. 512m, 4g)")));
        }
        let shift = match unit {
            "" | "b" => 0,
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            "t" | "tb" | "tib" => 40,
            _ => return Err(BadSize(format!("bad size `{text}`: unit `{unit}` is not one of b, k, m, g, t (e.g. 512m, 4g)"))),
        };
        let too_large = || BadSize(format!("bad size `{text}`: too large"));
        let number: u64 = number.parse().map_err(|_| too_large())?;
        number.checked_mul(1 << shift).map(Self).ok_or_else(too_large)
    }
}

impl fmt::Display for ByteSize {
    /// The shortest exact form: `512m`, `4g`, `6500k`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shift, unit) in [(40, "t"), (30, "g"), (20, "m"), (10, "k")] {
            if self.0 != 0 && self.0.is_multiple_of(1 << shift) {
                return write!(f, "{}{unit}", self.0 >> shift);
            }
        }
        write!(f, "{}b", self.0)
    }
}

/// Written as [`Display`](fmt::Display) shows it, so it reads back the same.
impl serde::Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_style_sizes() {
        for (text, bytes) in [("512m", 512 << 20), ("4g", 4 << 30), ("4G", 4 << 30), ("6500k", 6500 << 10), ("1gib", 1 << 30), ("192MiB", 192 << 20), ("7340032", 7 << 20)] {
            assert_eq!(text.parse::<ByteSize>().unwrap().bytes(), bytes, "{text}");
        }
    }

    #[test]
    fn rejects_bad_sizes_with_the_reason() {
        for (text, reason) in [
            ("512x", "unit `x` is not one of"),
            ("", "expected a number"),
            ("m", "expected a number"),
            ("-1g", "expected a number"),
            ("1.5g", "unit `.5g`"),
            ("99999999999t", "too large"),
        ] {
            let err = text.parse::<ByteSize>().unwrap_err().to_string();
            assert!(err.contains(reason) && err.contains(&format!("`{text}`")), "{text}: {err}");
        }
    }

    #[test]
    fn sizes_print_in_their_shortest_exact_form() {
        for text in ["512m", "4g", "6500k", "1t", "7340033b", "0b"] {
            assert_eq!(text.parse::<ByteSize>().unwrap().to_string(), text);
        }
        assert_eq!("1024m".parse::<ByteSize>().unwrap().to_string(), "1g");
    }
}
