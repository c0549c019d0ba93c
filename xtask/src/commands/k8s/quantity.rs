//! Sizes as Kubernetes quantities, and back.

use crate::config::ByteSize;

/// A size as a Kubernetes quantity: `512Mi`, `4Gi`, or bytes.
pub fn quantity(size: ByteSize) -> String {
    let bytes = size.bytes();
    for (shift, unit) in [(40, "Ti"), (30, "Gi"), (20, "Mi"), (10, "Ki")] {
        if bytes != 0 && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// The size a quantity written by [`quantity`] stands for.
pub(super) fn size_of_quantity(text: &str) -> Option<ByteSize> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let shift = match unit {
        "" => 0,
        "Ki" => 10,
        "Mi" => 20,
        "Gi" => 30,
        "Ti" => 40,
        _ => return None,
    };
    Some(ByteSize::from_bytes(number.parse::<u64>().ok()?.checked_mul(1 << shift)?))
}

/// `123`, `512Mi`, `4G`, `1.5Gi`: a number and an optional binary or decimal suffix.
pub(super) fn is_quantity(text: &str) -> bool {
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    !number.is_empty()
        && number.parse::<f64>().is_ok()
        && ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E"].contains(&suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_become_quantities_and_quantities_are_recognised() {
        assert_eq!(quantity("512m".parse().unwrap()), "512Mi");
        assert_eq!(quantity("4g".parse().unwrap()), "4Gi");
        assert_eq!(quantity("6500k".parse().unwrap()), "6500Ki");
        assert_eq!(quantity("7340033".parse().unwrap()), "7340033");
        for good in ["512Mi", "4Gi", "1.5Gi", "123", "4G"] {
            assert!(is_quantity(good), "{good}");
        }
        for bad in ["512mb", "4 Gi", "Gi", "-1Mi", "512m"] {
            assert!(!is_quantity(bad), "{bad}");
        }
        for size in ["512m", "4g", "6500k", "7340033"] {
            let size: ByteSize = size.parse().unwrap();
            assert_eq!(size_of_quantity(&quantity(size)), Some(size));
        }
    }
}
