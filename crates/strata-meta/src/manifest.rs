//! The binary encoding of the embedded store's manifest: the whole key space at
//! one revision. Layout (all integers big-endian):
//!
//! ```text
//! magic "STRM" | version u8 = 2 | epoch u64 | revision u64 | count u32 |
//!   count × (key_len u32 | key | value_len u32 | value | mod_revision u64) |
//! crc32c u32 of everything before it
//! ```

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};

const MAGIC: &[u8; 4] = b"STRM";
/// The manifest format (and prefix layout) version this build reads and writes.
pub(crate) const FORMAT_VERSION: u8 = 2;

/// The decoded contents of a manifest.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Manifest {
    /// The owner epoch that wrote it.
    pub epoch: u64,
    pub revision: u64,
    pub entries: BTreeMap<String, (Bytes, u64)>,
}

impl Manifest {
    #[cfg(test)]
    pub(crate) fn encode(&self) -> Bytes {
        self.encode_keeping(|_| true)
    }

    /// Encodes the entries whose key `keep` accepts (leased keys are not
    /// persisted: they die with the process that holds their lease).
    pub(crate) fn encode_keeping(&self, keep: impl Fn(&str) -> bool) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_slice(MAGIC);
        buf.put_u8(FORMAT_VERSION);
        buf.put_u64(self.epoch);
        buf.put_u64(self.revision);
        let kept: Vec<_> = self.entries.iter().filter(|(k, _)| keep(k)).collect();
        buf.put_u32(kept.len() as u32);
        for (key, (value, rev)) in kept {
            buf.put_u32(key.len() as u32);
            buf.put_slice(key.as_bytes());
            buf.put_u32(value.len() as u32);
            buf.put_slice(value);
            buf.put_u64(*rev);
        }
        let crc = crc32c::crc32c(&buf);
        buf.put_u32(crc);
        buf.freeze()
    }

    pub(crate) fn decode(mut data: Bytes) -> Result<Self, String> {
        if data.len() < 4 + 1 + 8 + 8 + 4 + 4 {
            return Err("too short".into());
        }
        let body_len = data.len() - 4;
        let stored_crc = (&data[body_len..]).get_u32();
        if crc32c::crc32c(&data[..body_len]) != stored_crc {
            return Err("checksum mismatch".into());
        }
        data.truncate(body_len);
        if &data[..4] != MAGIC {
            return Err("bad magic".into());
        }
        data.advance(4);
        let version = data.get_u8();
        if version != FORMAT_VERSION {
            return Err(format!("unsupported format version {version}"));
        }
        let epoch = data.get_u64();
        let revision = data.get_u64();
        let count = data.get_u32();
        let mut entries = BTreeMap::new();
        for _ in 0..count {
            let key = take(&mut data)?;
            let key = String::from_utf8(key.to_vec()).map_err(|_| "key not utf-8".to_string())?;
            let value = take(&mut data)?;
            if data.remaining() < 8 {
                return Err("truncated entry".into());
            }
            let rev = data.get_u64();
            entries.insert(key, (value, rev));
        }
        if data.has_remaining() {
            return Err("trailing bytes".into());
        }
        Ok(Manifest { epoch, revision, entries })
    }
}

fn take(data: &mut Bytes) -> Result<Bytes, String> {
    if data.remaining() < 4 {
        return Err("truncated length".into());
    }
    let len = data.get_u32() as usize;
    if data.remaining() < len {
        return Err("truncated field".into());
    }
    Ok(data.split_to(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let mut m = Manifest { epoch: 3, revision: 7, ..Default::default() };
        m.entries.insert("a".into(), (Bytes::from_static(b"1"), 3));
        m.entries.insert("b/c".into(), (Bytes::new(), 7));
        let enc = m.encode();
        assert_eq!(Manifest::decode(enc.clone()), Ok(m));
        let mut bad = enc.to_vec();
        bad[10] ^= 1;
        assert!(Manifest::decode(Bytes::from(bad)).is_err());
        assert!(Manifest::decode(enc.slice(..enc.len() - 1)).is_err());
    }
}
