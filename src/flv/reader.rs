//! The sans-IO FLV demuxer.

use bytes::{Buf, BytesMut};

use super::{
    Error, FILE_HEADER_SIZE, FILTER_BIT, FLAG_AUDIO, FLAG_VIDEO, PREVIOUS_TAG_SIZE_LEN,
    TAG_HEADER_LEN, TAG_TYPE_MASK, Tag, TagType,
};

/// What [`Reader::read`] returns: the file header once, then tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// The file header (and PreviousTagSize0) with its type flags. Players should not rely
    /// on the flags: many muxers set both regardless of what follows.
    Header {
        /// The audio flag (4) was set.
        has_audio: bool,
        /// The video flag (1) was set.
        has_video: bool,
    },
    /// One tag; its data is a slice of the input buffer.
    Tag(Tag),
}

/// Limits and mode of a [`Reader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderConfig {
    /// The largest tag data accepted, in bytes; larger tags are [`Error::TooLarge`]. It also
    /// bounds how many extra file header bytes (a data offset above 9) are skipped.
    /// Default 16 MiB, which is above what the 24-bit size field can declare, so by default
    /// only a lower setting takes effect.
    pub max_tag_size: u32,
    /// Whether the input starts with the file header. Default true; set it to false to read
    /// a bare run of tags, such as the body of an RTMP aggregate message.
    pub expect_header: bool,
}

impl Default for ReaderConfig {
    fn default() -> Self {
        ReaderConfig {
            max_tag_size: 16 << 20,
            expect_header: true,
        }
    }
}

/// Demuxes an FLV byte stream (a file or an HTTP-FLV body) into its header and tags.
///
/// Feed it the receive buffer with [`Reader::read`]; it consumes one whole item from the
/// front, or nothing. Tag data is split out of the buffer without a copy.
///
/// Checked: the `FLV` signature, version 1, a data offset of at least 9 (extra header bytes
/// are skipped), the Filter (encryption) bit, the configured size limit, and that every
/// tag's previous-tag-size trailer equals 11 + its data size. Not checked: the value of
/// PreviousTagSize0, the type flags, the reserved bits and the stream id, which muxers in
/// the wild get wrong without harm. Unknown tag types are returned as [`TagType::Other`].
#[derive(Debug)]
pub struct Reader {
    config: ReaderConfig,
    header_done: bool,
    wanted: usize,
}

impl Default for Reader {
    fn default() -> Self {
        Reader::new(ReaderConfig::default())
    }
}

fn be24(b: [u8; 3]) -> u32 {
    u32::from_be_bytes([0, b[0], b[1], b[2]])
}

impl Reader {
    /// A reader with the given limits.
    pub fn new(config: ReaderConfig) -> Reader {
        Reader {
            config,
            header_done: !config.expect_header,
            wanted: if config.expect_header {
                super::HEADER_LEN
            } else {
                TAG_HEADER_LEN
            },
        }
    }

    /// Whether the file header has been read (always true when no header is expected).
    pub fn header_done(&self) -> bool {
        self.header_done
    }

    /// How many bytes, counted from the start of the buffer, the reader needs before
    /// [`Reader::read`] can make progress again: a hint for sizing the next socket read.
    pub fn wanted(&self) -> usize {
        self.wanted
    }

    /// Consumes one item from the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds no whole item; nothing is consumed then. On
    /// `Err` nothing is consumed either, but the stream cannot be read further.
    pub fn read(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, Error> {
        if self.header_done {
            self.read_tag(buf)
        } else {
            self.read_header(buf)
        }
    }

    /// FLV 10.1 §E.2 The FLV header, then PreviousTagSize0.
    fn read_header(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, Error> {
        let Some(&[f, l, v, version, flags, o3, o2, o1, o0]) = buf.first_chunk::<9>() else {
            self.wanted = super::HEADER_LEN;
            return Ok(None);
        };
        if [f, l, v] != *b"FLV" {
            return Err(Error::BadSignature([f, l, v]));
        }
        if version != 1 {
            return Err(Error::UnsupportedVersion(version));
        }
        let offset = u32::from_be_bytes([o3, o2, o1, o0]);
        let extra = offset
            .checked_sub(FILE_HEADER_SIZE)
            .filter(|&extra| extra <= self.config.max_tag_size)
            .ok_or(Error::BadDataOffset(offset))?;
        // Bounded by max_tag_size above, so this neither overflows nor asks for too much.
        let total = (FILE_HEADER_SIZE as usize) + (extra as usize) + PREVIOUS_TAG_SIZE_LEN;
        if buf.len() < total {
            self.wanted = total;
            return Ok(None);
        }
        buf.advance(total);
        self.header_done = true;
        self.wanted = TAG_HEADER_LEN;
        Ok(Some(Item::Header {
            has_audio: flags & FLAG_AUDIO != 0,
            has_video: flags & FLAG_VIDEO != 0,
        }))
    }

    /// FLV 10.1 §E.3 The FLV file body and §E.4.1 FLVTAG.
    fn read_tag(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, Error> {
        let Some(&[kind, s2, s1, s0, t2, t1, t0, ext, ..]) = buf.first_chunk::<TAG_HEADER_LEN>()
        else {
            self.wanted = TAG_HEADER_LEN;
            return Ok(None);
        };
        if kind & FILTER_BIT != 0 {
            return Err(Error::Encrypted);
        }
        let size = be24([s2, s1, s0]);
        if size > self.config.max_tag_size {
            return Err(Error::TooLarge {
                size,
                max: self.config.max_tag_size,
            });
        }
        let timestamp = be24([t2, t1, t0]) | (u32::from(ext) << 24);
        let len = size as usize;
        let end = TAG_HEADER_LEN + len;
        let Some(&trailer) = buf
            .get(end..)
            .and_then(|rest| rest.first_chunk::<PREVIOUS_TAG_SIZE_LEN>())
        else {
            self.wanted = end + PREVIOUS_TAG_SIZE_LEN;
            return Ok(None);
        };
        // A 24-bit size plus 11 always fits.
        let expected = size + TAG_HEADER_LEN as u32;
        let found = u32::from_be_bytes(trailer);
        if found != expected {
            return Err(Error::PreviousTagSize { expected, found });
        }
        buf.advance(TAG_HEADER_LEN);
        let data = buf.split_to(len).freeze();
        buf.advance(PREVIOUS_TAG_SIZE_LEN);
        self.wanted = TAG_HEADER_LEN;
        Ok(Some(Item::Tag(Tag {
            tag_type: TagType::from(kind & TAG_TYPE_MASK),
            timestamp,
            data,
        })))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use proptest::prelude::*;

    use super::super::{HEADER_LEN, encode_header, encode_tag};
    use super::*;

    fn tag(tag_type: TagType, timestamp: u32, data: &[u8]) -> Tag {
        Tag {
            tag_type,
            timestamp,
            data: Bytes::copy_from_slice(data),
        }
    }

    fn stream(has_audio: bool, has_video: bool, tags: &[Tag]) -> BytesMut {
        let mut out = BytesMut::new();
        encode_header(has_audio, has_video, &mut out);
        for t in tags {
            encode_tag(t, &mut out).expect("fits");
        }
        out
    }

    fn read_all(r: &mut Reader, buf: &mut BytesMut) -> Vec<Item> {
        let mut out = Vec::new();
        while let Some(item) = r.read(buf).expect("valid input") {
            out.push(item);
        }
        out
    }

    /// Feeds `wire` in pieces of the given sizes (then the rest), reading after each piece.
    fn feed(r: &mut Reader, wire: &[u8], splits: &[usize]) -> Vec<Item> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut rest = wire;
        let mut sizes = splits.iter();
        while !rest.is_empty() {
            let n = sizes.next().copied().unwrap_or(rest.len()).min(rest.len());
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            out.extend(read_all(r, &mut buf));
        }
        assert!(buf.is_empty());
        out
    }

    fn sample_tags() -> Vec<Tag> {
        vec![
            tag(TagType::Script, 0, b"\x02\x00\x0aonMetaData"),
            tag(TagType::Video, 0, &[0x17, 0x00, 0, 0, 0, 1, 2, 3]),
            tag(TagType::Audio, 0, &[0xAF, 0x00, 0x12, 0x10]),
            tag(TagType::Video, 40, &[0x17, 0x01, 0, 0, 0, 0xAA]),
            tag(TagType::Audio, 0x0100_0000, &[]),
        ]
    }

    #[test]
    fn reads_header_and_tags() {
        let tags = sample_tags();
        let mut buf = stream(true, true, &tags);
        let got = read_all(&mut Reader::default(), &mut buf);
        let mut want = vec![Item::Header {
            has_audio: true,
            has_video: true,
        }];
        want.extend(tags.into_iter().map(Item::Tag));
        assert_eq!(got, want);
        assert!(buf.is_empty());
    }

    #[test]
    fn header_flags() {
        for (a, v) in [(true, false), (false, true), (false, false)] {
            let mut buf = stream(a, v, &[]);
            let got = read_all(&mut Reader::default(), &mut buf);
            assert_eq!(
                got,
                vec![Item::Header {
                    has_audio: a,
                    has_video: v
                }]
            );
        }
    }

    #[test]
    fn skips_extra_header_bytes() {
        let mut wire = vec![b'F', b'L', b'V', 1, 5, 0, 0, 0, 12, 0xEE, 0xEE, 0xEE];
        wire.extend_from_slice(&[0, 0, 0, 0]);
        let t = tag(TagType::Video, 7, &[0x27, 0x01]);
        let mut body = BytesMut::new();
        encode_tag(&t, &mut body).expect("fits");
        wire.extend_from_slice(&body);
        let got = feed(
            &mut Reader::default(),
            &wire,
            &[1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
        );
        assert_eq!(
            got,
            vec![
                Item::Header {
                    has_audio: true,
                    has_video: true
                },
                Item::Tag(t)
            ]
        );
    }

    #[test]
    fn data_offset_out_of_range() {
        let mut r = Reader::new(ReaderConfig {
            max_tag_size: 100,
            ..ReaderConfig::default()
        });
        let mut buf = BytesMut::from(&b"FLV\x01\x05\x00\x00\x00\x08\x00\x00\x00\x00"[..]);
        assert_eq!(r.read(&mut buf), Err(Error::BadDataOffset(8)));
        let mut buf = BytesMut::from(&b"FLV\x01\x05\x00\x00\x00\x6e"[..]);
        assert_eq!(r.read(&mut buf), Err(Error::BadDataOffset(110)));
        assert_eq!(buf.len(), 9);
        // 9 + 100 is still allowed: wait for it.
        let mut buf = BytesMut::from(&b"FLV\x01\x05\x00\x00\x00\x6d"[..]);
        assert_eq!(r.read(&mut buf), Ok(None));
        assert_eq!(r.wanted(), 113);
    }

    #[test]
    fn bad_signature() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 404"[..]);
        assert_eq!(
            Reader::default().read(&mut buf),
            Err(Error::BadSignature(*b"HTT"))
        );
        assert_eq!(buf.len(), 12);
    }

    #[test]
    fn bad_version() {
        let mut buf = BytesMut::from(&b"FLV\x02\x05\x00\x00\x00\x09\x00\x00\x00\x00"[..]);
        assert_eq!(
            Reader::default().read(&mut buf),
            Err(Error::UnsupportedVersion(2))
        );
    }

    #[test]
    fn bad_previous_tag_size() {
        let mut buf = stream(true, true, &[tag(TagType::Audio, 0, &[0xAF, 0x01, 1])]);
        let n = buf.len();
        buf[n - 1] = 3; // the data size, as some broken muxers write it
        let mut r = Reader::default();
        assert!(matches!(r.read(&mut buf), Ok(Some(Item::Header { .. }))));
        assert_eq!(
            r.read(&mut buf),
            Err(Error::PreviousTagSize {
                expected: 14,
                found: 3
            })
        );
        assert_eq!(buf.len(), n - HEADER_LEN);
    }

    #[test]
    fn too_large() {
        let mut r = Reader::new(ReaderConfig {
            max_tag_size: 4,
            ..ReaderConfig::default()
        });
        let mut buf = stream(
            false,
            true,
            &[
                tag(TagType::Video, 0, &[1, 2, 3, 4]),
                tag(TagType::Video, 0, &[1, 2, 3, 4, 5]),
            ],
        );
        assert!(matches!(r.read(&mut buf), Ok(Some(Item::Header { .. }))));
        assert!(matches!(r.read(&mut buf), Ok(Some(Item::Tag(_)))));
        // Reported from the tag header alone, before the data arrives.
        buf.truncate(TAG_HEADER_LEN);
        assert_eq!(r.read(&mut buf), Err(Error::TooLarge { size: 5, max: 4 }));
    }

    #[test]
    fn encrypted_flag() {
        let mut buf = stream(true, false, &[tag(TagType::Audio, 0, &[0xAF, 0x01])]);
        buf[HEADER_LEN] |= 0x20;
        let mut r = Reader::default();
        assert!(matches!(r.read(&mut buf), Ok(Some(Item::Header { .. }))));
        assert_eq!(r.read(&mut buf), Err(Error::Encrypted));
    }

    #[test]
    fn other_tag_types_and_reserved_bits() {
        let mut buf = stream(true, true, &[tag(TagType::Other(15), 3, &[1, 2])]);
        // Reserved bits (top two) are ignored.
        buf[HEADER_LEN] |= 0xC0;
        let got = read_all(&mut Reader::default(), &mut buf);
        assert_eq!(got[1], Item::Tag(tag(TagType::Other(15), 3, &[1, 2])));
    }

    #[test]
    fn without_header() {
        let tags = sample_tags();
        let mut buf = BytesMut::new();
        for t in &tags {
            encode_tag(t, &mut buf).expect("fits");
        }
        let mut r = Reader::new(ReaderConfig {
            expect_header: false,
            ..ReaderConfig::default()
        });
        assert!(r.header_done());
        let got = read_all(&mut r, &mut buf);
        assert_eq!(got, tags.into_iter().map(Item::Tag).collect::<Vec<_>>());
    }

    #[test]
    fn truncated_input_consumes_nothing() {
        let wire = stream(true, true, &sample_tags());
        // Item boundaries: after the header, and after each tag.
        let mut bounds = vec![HEADER_LEN];
        for t in sample_tags() {
            let last = *bounds.last().expect("non-empty");
            bounds.push(last + t.encoded_len());
        }
        for cut in 0..wire.len() {
            let mut r = Reader::default();
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut consumed = 0;
            loop {
                let before = buf.len();
                match r.read(&mut buf) {
                    Ok(Some(_)) => consumed += before - buf.len(),
                    Ok(None) => {
                        assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                        break;
                    }
                    Err(e) => panic!("truncated at {cut}: {e}"),
                }
            }
            // Everything up to the last whole item was read, nothing after it.
            let expect = bounds
                .iter()
                .copied()
                .filter(|&b| b <= cut)
                .max()
                .unwrap_or(0);
            assert_eq!(consumed, expect, "cut at {cut}");
            assert!(r.wanted() > buf.len(), "cut at {cut}");
        }
    }

    #[test]
    fn tag_data_is_zero_copy() {
        let mut buf = stream(false, true, &[tag(TagType::Video, 0, &[0x17, 1, 2, 3, 4])]);
        let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
        let mut r = Reader::default();
        assert!(matches!(r.read(&mut buf), Ok(Some(Item::Header { .. }))));
        let Ok(Some(Item::Tag(t))) = r.read(&mut buf) else {
            panic!("expected a tag");
        };
        let p = t.data.as_ptr() as usize;
        assert!(range.contains(&p) && range.contains(&(p + t.data.len() - 1)));
        assert_eq!(p, range.start + HEADER_LEN + TAG_HEADER_LEN);
    }

    fn arb_tag() -> impl Strategy<Value = Tag> {
        (
            prop_oneof![
                Just(TagType::Audio),
                Just(TagType::Video),
                Just(TagType::Script),
                (0u8..32).prop_map(TagType::from),
            ],
            any::<u32>(),
            prop::collection::vec(any::<u8>(), 0..600),
        )
            .prop_map(|(tag_type, timestamp, data)| Tag {
                tag_type,
                timestamp,
                data: Bytes::from(data),
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Encoder → split at random points → reader yields the header and the tags written.
        #[test]
        fn roundtrip_any_split(
            has_audio in any::<bool>(),
            has_video in any::<bool>(),
            tags in prop::collection::vec(arb_tag(), 0..30),
            splits in prop::collection::vec(1usize..700, 0..64),
        ) {
            let wire = stream(has_audio, has_video, &tags);
            let got = feed(&mut Reader::default(), &wire, &splits);
            let mut want = vec![Item::Header { has_audio, has_video }];
            want.extend(tags.into_iter().map(Item::Tag));
            prop_assert_eq!(got, want);
        }

        /// Arbitrary bytes, with or without a valid header first: never a panic, and
        /// `Ok(None)` never consumes.
        #[test]
        fn arbitrary_bytes_never_panic(
            header in any::<bool>(),
            bytes in prop::collection::vec(any::<u8>(), 0..2000),
        ) {
            let mut buf = BytesMut::new();
            if header {
                encode_header(true, true, &mut buf);
            }
            buf.extend_from_slice(&bytes);
            let mut r = Reader::default();
            loop {
                let before = buf.len();
                match r.read(&mut buf) {
                    Ok(Some(_)) => prop_assert!(buf.len() < before),
                    Ok(None) => {
                        prop_assert_eq!(buf.len(), before);
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
    }
}
