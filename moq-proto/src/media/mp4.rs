//! ISO base media file format boxes (ISO/IEC 14496-12 §4.2): `size (u32)`, `type (4cc)`,
//! optionally a 64-bit `largesize` when `size == 1`, then the payload. A box of size 0 runs to
//! the end of its container; we accept that only where it is harmless (the last top-level
//! box of a file) and refuse it inside containers.
//!
//! Everything here reads from a byte slice and never allocates; every declared size is
//! checked against what contains it and against a cap before it is trusted.

/// A four-character box type.
pub type FourCc = [u8; 4];

/// A box could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Mp4Error {
    /// The input ended inside a box or field.
    #[error("{what}: truncated")]
    Truncated {
        /// What was being read.
        what: &'static str,
    },
    /// A box claims more bytes than its parent holds.
    #[error("box {} of {size} bytes overruns its parent ({room} bytes left)", fourcc(.ty))]
    Overrun {
        /// The box type.
        ty: FourCc,
        /// Its declared size.
        size: u64,
        /// Room left in the parent.
        room: u64,
    },
    /// A box larger than its cap.
    #[error("box {} of {size} bytes is larger than {max}", fourcc(.ty))]
    TooLarge {
        /// The box type.
        ty: FourCc,
        /// Its declared size.
        size: u64,
        /// The cap.
        max: u64,
    },
    /// A box size below its header's, or zero where not allowed.
    #[error("box {} has an invalid size {size}", fourcc(.ty))]
    BadSize {
        /// The box type.
        ty: FourCc,
        /// The declared size.
        size: u64,
    },
    /// A required box is missing.
    #[error("missing {0} box")]
    Missing(&'static str),
    /// A field holds a value this reader does not support.
    #[error("unsupported {what}: {value}")]
    Unsupported {
        /// The field.
        what: &'static str,
        /// Its value.
        value: u64,
    },
    /// More entries than the cap (tracks, samples, nesting).
    #[error("too many {what} (at most {max})")]
    TooMany {
        /// What.
        what: &'static str,
        /// The cap.
        max: usize,
    },
    /// A fragment arrived before the initialisation segment, or for a track it does not
    /// describe.
    #[error("{0}")]
    Sequence(&'static str),
}

/// Printable form of a four-character code.
pub fn fourcc(code: &FourCc) -> String {
    code.iter()
        .map(|b| {
            if b.is_ascii_graphic() {
                char::from(*b)
            } else {
                '?'
            }
        })
        .collect()
}

/// One box: its type, and its payload (after the header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxRef<'a> {
    /// The type.
    pub ty: FourCc,
    /// The payload.
    pub payload: &'a [u8],
    /// The header's length (8 or 16).
    pub header: usize,
    /// The whole box, header included.
    pub raw: &'a [u8],
}

/// A box header at the start of `buf`: its type, header length and total size. `Ok(None)`
/// when `buf` is too short to hold the header. A size of 0 ("to the end") is returned as
/// `None` in the size.
pub fn header(buf: &[u8]) -> Result<Option<(FourCc, usize, Option<u64>)>, Mp4Error> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let size = u64::from(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]));
    let ty = [buf[4], buf[5], buf[6], buf[7]];
    match size {
        0 => Ok(Some((ty, 8, None))),
        1 => {
            if buf.len() < 16 {
                return Ok(None);
            }
            let large = u64::from_be_bytes([
                buf[8], buf[9], buf[10], buf[11], buf[12], buf[13], buf[14], buf[15],
            ]);
            if large < 16 {
                return Err(Mp4Error::BadSize { ty, size: large });
            }
            Ok(Some((ty, 16, Some(large))))
        }
        size if size < 8 => Err(Mp4Error::BadSize { ty, size }),
        size => Ok(Some((ty, 8, Some(size)))),
    }
}

/// The boxes of a container payload, in order; each must fit in what remains.
pub struct Boxes<'a> {
    rest: &'a [u8],
}

/// Iterate over the boxes of `payload`.
pub fn boxes(payload: &[u8]) -> Boxes<'_> {
    Boxes { rest: payload }
}

impl<'a> Iterator for Boxes<'a> {
    type Item = Result<BoxRef<'a>, Mp4Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let result = (|| {
            let (ty, header_len, size) =
                header(self.rest)?.ok_or(Mp4Error::Truncated { what: "box header" })?;
            let size = size.ok_or(Mp4Error::BadSize { ty, size: 0 })?;
            let room = self.rest.len() as u64;
            if size > room {
                return Err(Mp4Error::Overrun { ty, size, room });
            }
            let (whole, rest) = self.rest.split_at(size as usize);
            self.rest = rest;
            Ok(BoxRef {
                ty,
                payload: &whole[header_len..],
                header: header_len,
                raw: whole,
            })
        })();
        if result.is_err() {
            self.rest = &[];
        }
        Some(result)
    }
}

/// The first child of `payload` with type `ty`.
pub fn child<'a>(payload: &'a [u8], ty: &FourCc) -> Result<Option<&'a [u8]>, Mp4Error> {
    for b in boxes(payload) {
        let b = b?;
        if &b.ty == ty {
            return Ok(Some(b.payload));
        }
    }
    Ok(None)
}

/// Like [`child`], but the box is required.
pub fn require<'a>(
    payload: &'a [u8],
    ty: &FourCc,
    name: &'static str,
) -> Result<&'a [u8], Mp4Error> {
    child(payload, ty)?.ok_or(Mp4Error::Missing(name))
}

/// A big-endian field reader over a box payload.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Fields<'a> {
    /// Read fields of `what` from `buf`.
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, what }
    }

    /// What is left.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    /// Take `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Mp4Error> {
        if self.buf.len() < n {
            return Err(Mp4Error::Truncated { what: self.what });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// Skip `n` bytes.
    pub fn skip(&mut self, n: usize) -> Result<(), Mp4Error> {
        self.take(n).map(|_| ())
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, Mp4Error> {
        Ok(self.take(1)?[0])
    }

    /// A big-endian u16.
    pub fn u16(&mut self) -> Result<u16, Mp4Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A big-endian u24.
    pub fn u24(&mut self) -> Result<u32, Mp4Error> {
        let b = self.take(3)?;
        Ok(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }

    /// A big-endian u32.
    pub fn u32(&mut self) -> Result<u32, Mp4Error> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A big-endian u64.
    pub fn u64(&mut self) -> Result<u64, Mp4Error> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }

    /// A full box's version and flags (ISO/IEC 14496-12 §4.2).
    pub fn version_flags(&mut self) -> Result<(u8, u32), Mp4Error> {
        let word = self.u32()?;
        Ok(((word >> 24) as u8, word & 0x00ff_ffff))
    }
}

#[cfg(test)]
pub(crate) mod build {
    //! Hand-built boxes for golden tests.

    /// A box of type `ty` around `payload`.
    pub(crate) fn boxed(ty: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut out = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(ty);
        out.extend_from_slice(payload);
        out
    }

    /// A full box (version and flags first).
    pub(crate) fn full(ty: &[u8; 4], version: u8, flags: u32, payload: &[u8]) -> Vec<u8> {
        let mut body = ((u32::from(version) << 24) | flags).to_be_bytes().to_vec();
        body.extend_from_slice(payload);
        boxed(ty, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::build::boxed;
    use super::*;

    #[test]
    fn boxes_iterate_and_check_their_sizes() {
        let file = [boxed(b"ftyp", b"isom"), boxed(b"free", b"")].concat();
        let got: Vec<_> = boxes(&file).map(|b| b.expect("valid").ty).collect();
        assert_eq!(got, [*b"ftyp", *b"free"]);
        // A box claiming more than is there overruns; a size below 8 is invalid; size 0 is
        // refused inside a container.
        let mut overrun = boxed(b"moov", b"abcd");
        overrun[3] = 200;
        assert!(matches!(
            boxes(&overrun).next(),
            Some(Err(Mp4Error::Overrun { size: 200, .. }))
        ));
        let tiny = [0, 0, 0, 4, b'a', b'b', b'c', b'd'];
        assert!(matches!(
            boxes(&tiny).next(),
            Some(Err(Mp4Error::BadSize { .. }))
        ));
        let zero = [0, 0, 0, 0, b'm', b'd', b'a', b't', 1, 2, 3];
        assert!(matches!(
            boxes(&zero).next(),
            Some(Err(Mp4Error::BadSize { size: 0, .. }))
        ));
        // 64-bit sizes.
        let mut large = vec![0, 0, 0, 1];
        large.extend_from_slice(b"mdat");
        large.extend_from_slice(&20u64.to_be_bytes());
        large.extend_from_slice(&[9, 9, 9, 9]);
        let b = boxes(&large).next().expect("a box").expect("valid");
        assert_eq!(
            (b.ty, b.payload, b.header),
            (*b"mdat", &[9u8, 9, 9, 9][..], 16)
        );
        // Every truncation: an error, never a panic.
        for end in 0..large.len() {
            let _ = boxes(&large[..end]).collect::<Vec<_>>();
        }
    }

    #[test]
    fn fields_read_big_endian_and_stop_at_the_end() {
        let mut f = Fields::new(&[1, 0, 0, 2, 0xab, 0xcd, 0xef], "test");
        assert_eq!(f.version_flags(), Ok((1, 2)));
        assert_eq!(f.u24(), Ok(0xab_cdef));
        assert_eq!(f.u8(), Err(Mp4Error::Truncated { what: "test" }));
    }
}
