//! Input building blocks shared by the structured targets, and the seed encoder.
//!
//! The structured targets decode their input front to back with [`arbitrary`]'s derive
//! (`T::arbitrary(&mut Unstructured)`, never `arbitrary_take_rest`), so every value is a plain
//! sequence of bytes:
//!
//! * integers: little-endian, `size_of` bytes, missing bytes read as zero;
//! * `bool`: one byte, low bit;
//! * `Option<T>`: a `bool`, then `T` when it is `true`;
//! * `Vec<T>`: for each element a `true` byte then the element, ended by a `false` byte (or by
//!   the end of the data);
//! * an enum: a `u32` tag `t` selects variant `(t * variants) >> 32`, then the variant's fields;
//! * [`Text`]: one length byte, then that many bytes, read as UTF-8 lossily.
//!
//! [`Encode`] writes exactly that format, so the committed seed files of the structured targets
//! are generated from readable Rust values (see `seeds` in `lib.rs`), and a unit test checks that
//! each seed decodes back to the value it was written from.

use arbitrary::{Arbitrary, Unstructured};

/// A short string: one length byte then up to 255 bytes, decoded as UTF-8 lossily (so every byte
/// string is some `Text`, and mutations of the bytes stay meaningful).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Text(pub String);

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

impl Text {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text(s.to_string())
    }
}

impl<'a> Arbitrary<'a> for Text {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let len = usize::from(u8::arbitrary(u)?);
        let len = len.min(u.len());
        let bytes = u.bytes(len)?;
        Ok(Text(String::from_utf8_lossy(bytes).into_owned()))
    }

    fn size_hint(_depth: usize) -> (usize, Option<usize>) {
        (1, Some(256))
    }
}

/// Writes a value in the byte format its `Arbitrary` impl reads (module docs).
pub trait Encode {
    /// Appends the encoding of `self` to `out`.
    fn encode(&self, out: &mut Vec<u8>);
}

/// The bytes of `value`.
pub fn to_bytes<T: Encode + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    value.encode(&mut out);
    out
}

/// The derive's enum tag for variant `index` of `count`: the least `t` with
/// `(t * count) >> 32 == index`.
pub fn tag(out: &mut Vec<u8>, index: u32, count: u32) {
    debug_assert!(index < count);
    let t = ((u64::from(index) << 32).div_ceil(u64::from(count))) as u32;
    out.extend_from_slice(&t.to_le_bytes());
}

macro_rules! encode_int {
    ($($t:ty),*) => {$(
        impl Encode for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
encode_int!(u8, u16, u32, u64, i8, i16, i32, i64);

impl Encode for bool {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                v.encode(out);
            }
        }
    }
}

impl<T: Encode> Encode for Vec<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        for v in self {
            out.push(1);
            v.encode(out);
        }
        out.push(0);
    }
}

impl<A: Encode, B: Encode> Encode for (A, B) {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
        self.1.encode(out);
    }
}

impl Encode for Text {
    fn encode(&self, out: &mut Vec<u8>) {
        let bytes = self.0.as_bytes();
        let len = bytes.len().min(255);
        // Cut on a character boundary so the text decodes back unchanged.
        let mut end = len;
        while !self.0.is_char_boundary(end) {
            end -= 1;
        }
        out.push(end as u8);
        out.extend_from_slice(&bytes[..end]);
    }
}
