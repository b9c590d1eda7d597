//! Byte sizes with unit suffixes: `1GiB`, `200MiB`, `1024`, `1.5GB`.

/// Parses a byte count. Accepts a plain number of bytes or a number followed by
/// `B`, `KB`/`MB`/`GB`/`TB` (powers of 1000) or `KiB`/`MiB`/`GiB`/`TiB`
/// (powers of 1024), case-insensitive, optionally with a space before the unit.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("`{text}`: expected a number, e.g. 1GiB, 200MiB, 1024"));
    }
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        other => return Err(format!("`{text}`: unknown unit `{other}` (use B, KB, MB, GB, KiB, MiB, GiB)")),
    };
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(multiplier).ok_or_else(|| format!("`{text}`: too large"));
    }
    let f: f64 = num.parse().map_err(|_| format!("`{text}`: bad number `{num}`"))?;
    let bytes = (f * multiplier as f64).round();
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("`{text}`: too large"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn units() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("200MiB"), Ok(200 << 20));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("1KB"), Ok(1000));
        assert_eq!(parse_size("5 GB"), Ok(5_000_000_000));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("100b"), Ok(100));
        assert_eq!(parse_size("2mib"), Ok(2 << 20));
    }

    #[test]
    fn errors() {
        assert!(parse_size("").is_err());
        assert!(parse_size("GiB").is_err());
        assert!(parse_size("1XB").is_err());
        assert!(parse_size("1.2.3MB").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }
}
