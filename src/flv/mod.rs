//! The FLV container (FLV 10.1 §E.2–E.3) and codec sniffing of its tag data.
//!
//! An HTTP-FLV body is the 13-byte file header ([`encode_header`]) followed by tags. Each tag
//! is an 11-byte header, the tag data, and a 4-byte "previous tag size" trailer. RTMP audio,
//! video and data message bodies are FLV tag data unchanged, so ringcast encodes the header
//! and trailer of each media message once ([`tag_header`], [`previous_tag_size`]) and writes
//! them around the shared payload with vectored IO; [`encode_tag`] does all three into one
//! buffer where a copy does not matter.
//!
//! [`Reader`] is the sans-IO demuxer (the load tester's HTTP-FLV player and the tests use
//! it), and [`codec`] looks into audio and video tag data: keyframes, sequence headers, and
//! the codec, for legacy FLV and Enhanced RTMP alike.

pub mod codec;
mod reader;

pub use codec::{
    AudioFormat, AudioInfo, FrameType, VideoCodec, VideoInfo, VideoPacket, audio_info,
    is_audio_sequence_header, is_video_keyframe, is_video_sequence_header, track_id, video_info,
};
pub use reader::{Item, Reader, ReaderConfig};

use bytes::{BufMut, Bytes, BytesMut};

/// Length of the FLV file header plus PreviousTagSize0: what [`encode_header`] writes.
pub const HEADER_LEN: usize = 13;
/// Length of a tag header (type, data size, timestamp, extended timestamp, stream id).
pub const TAG_HEADER_LEN: usize = 11;
/// Length of the previous-tag-size field that follows each tag.
pub const PREVIOUS_TAG_SIZE_LEN: usize = 4;
/// The largest tag data a tag header can describe: the data size field is 24 bits.
pub const MAX_DATA_LEN: usize = 0x00FF_FFFF;

/// The value of the file header's data offset field: the header is 9 bytes.
const FILE_HEADER_SIZE: u32 = 9;
/// Type flags: audio tags present.
const FLAG_AUDIO: u8 = 0x04;
/// Type flags: video tags present.
const FLAG_VIDEO: u8 = 0x01;
/// Tag type byte: the Filter bit (FLV 10.1 §E.4.1), set when the tag data is encrypted.
const FILTER_BIT: u8 = 0x20;
/// Tag type byte: the tag type proper (the top two bits are reserved).
const TAG_TYPE_MASK: u8 = 0x1F;

/// What went wrong reading (or, for [`Error::DataTooLong`], encoding) FLV.
///
/// A [`Reader`] error ends the stream: the reader's position no longer matches tag
/// boundaries, so the caller should close the connection or file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The stream does not start with `FLV`.
    #[error("not an FLV stream: signature {0:02x?}")]
    BadSignature([u8; 3]),
    /// The file header's version is not 1.
    #[error("unsupported FLV version {0}")]
    UnsupportedVersion(u8),
    /// The file header's data offset is below 9, or beyond the reader's maximum tag size
    /// past the 9-byte header.
    #[error("FLV header declares a data offset of {0}")]
    BadDataOffset(u32),
    /// A tag's trailer does not equal 11 + its data size: the stream is corrupt or out of
    /// step.
    #[error("previous tag size {found} where {expected} was expected")]
    PreviousTagSize {
        /// 11 + the data size of the tag just read.
        expected: u32,
        /// The value in the stream.
        found: u32,
    },
    /// A tag declares more data than the configured maximum.
    #[error("tag of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The declared data size.
        size: u32,
        /// The configured maximum.
        max: u32,
    },
    /// A tag has the Filter bit set: its data is encrypted, which ringcast does not handle.
    #[error("encrypted (filtered) FLV tag")]
    Encrypted,
    /// Encoding: tag data longer than the 24-bit data size field can express.
    #[error("tag data of {0} bytes exceeds the 24-bit FLV data size field")]
    DataTooLong(usize),
}

/// The type of an FLV tag, which is also the RTMP message type id of the same payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TagType {
    /// Audio data (8).
    Audio,
    /// Video data (9).
    Video,
    /// Script data: AMF0 `onMetaData` and the like (18).
    Script,
    /// Any other type, kept rather than rejected. [`TagType::from`] never produces it for
    /// 8, 9 or 18.
    Other(u8),
}

impl TagType {
    /// The numeric tag type.
    pub fn as_u8(self) -> u8 {
        match self {
            TagType::Audio => 8,
            TagType::Video => 9,
            TagType::Script => 18,
            TagType::Other(t) => t,
        }
    }
}

impl From<u8> for TagType {
    /// Infallible: unknown types become [`TagType::Other`]. (This also provides
    /// `TryFrom<u8>` with an uninhabited error.)
    fn from(t: u8) -> Self {
        match t {
            8 => TagType::Audio,
            9 => TagType::Video,
            18 => TagType::Script,
            t => TagType::Other(t),
        }
    }
}

impl From<TagType> for u8 {
    fn from(t: TagType) -> u8 {
        t.as_u8()
    }
}

/// One FLV tag: its type, timestamp and data (shared, not copied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// The tag type.
    pub tag_type: TagType,
    /// Timestamp in milliseconds: the 24-bit field plus the extended byte as the high bits.
    pub timestamp: u32,
    /// The tag data (an RTMP message body).
    pub data: Bytes,
}

impl Tag {
    /// The bytes this tag takes on the wire: header, data and previous tag size.
    pub fn encoded_len(&self) -> usize {
        TAG_HEADER_LEN + self.data.len() + PREVIOUS_TAG_SIZE_LEN
    }
}

/// Writes the FLV file header and PreviousTagSize0: `FLV`, version 1, the type flags,
/// data offset 9, then a zero u32 ([`HEADER_LEN`] bytes in all).
pub fn encode_header(has_audio: bool, has_video: bool, out: &mut BytesMut) {
    let mut flags = 0;
    if has_audio {
        flags |= FLAG_AUDIO;
    }
    if has_video {
        flags |= FLAG_VIDEO;
    }
    out.reserve(HEADER_LEN);
    out.put_slice(b"FLV");
    out.put_u8(1);
    out.put_u8(flags);
    out.put_u32(FILE_HEADER_SIZE);
    out.put_u32(0);
}

/// The 11-byte header of a tag with `data_len` bytes of data (FLV 10.1 §E.4.1).
///
/// The timestamp's low 24 bits go in the timestamp field and its high 8 bits in the
/// extended byte; the stream id is 0. Only the low 5 bits of an [`TagType::Other`] type are
/// written, so the Filter bit is never set.
///
/// Data longer than [`MAX_DATA_LEN`] cannot be described and is rejected with
/// [`Error::DataTooLong`] rather than clamped, which would desynchronise every reader.
/// RTMP message bodies never hit this: their length field is 24 bits too.
pub fn tag_header(
    tag_type: TagType,
    timestamp: u32,
    data_len: usize,
) -> Result<[u8; TAG_HEADER_LEN], Error> {
    if data_len > MAX_DATA_LEN {
        return Err(Error::DataTooLong(data_len));
    }
    let [_, l2, l1, l0] = (data_len as u32).to_be_bytes();
    let [ext, t2, t1, t0] = timestamp.to_be_bytes();
    Ok([
        tag_type.as_u8() & TAG_TYPE_MASK,
        l2,
        l1,
        l0,
        t2,
        t1,
        t0,
        ext,
        0,
        0,
        0,
    ])
}

/// The 4-byte trailer of a tag with `data_len` bytes of data: 11 + `data_len`, big-endian.
///
/// Meaningful only for lengths [`tag_header`] accepts; beyond `u32` it saturates.
pub fn previous_tag_size(data_len: usize) -> [u8; PREVIOUS_TAG_SIZE_LEN] {
    let size = data_len.saturating_add(TAG_HEADER_LEN);
    u32::try_from(size).unwrap_or(u32::MAX).to_be_bytes()
}

/// Appends a whole tag to `out`: header, data and previous tag size. Writes nothing if the
/// data is too long for a tag (see [`tag_header`]).
pub fn encode_tag(tag: &Tag, out: &mut BytesMut) -> Result<(), Error> {
    let header = tag_header(tag.tag_type, tag.timestamp, tag.data.len())?;
    out.reserve(tag.encoded_len());
    out.put_slice(&header);
    out.put_slice(&tag.data);
    out.put_slice(&previous_tag_size(tag.data.len()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_bytes_exact() {
        let mut out = BytesMut::new();
        encode_header(true, true, &mut out);
        assert_eq!(
            &out[..],
            &[b'F', b'L', b'V', 1, 0x05, 0, 0, 0, 9, 0, 0, 0, 0]
        );
        assert_eq!(out.len(), HEADER_LEN);

        for (a, v, flags) in [(true, false, 4), (false, true, 1), (false, false, 0)] {
            let mut out = BytesMut::new();
            encode_header(a, v, &mut out);
            assert_eq!(out[4], flags);
            assert_eq!(out.len(), HEADER_LEN);
        }
    }

    #[test]
    fn tag_header_exact() {
        assert_eq!(
            tag_header(TagType::Video, 0x0012_3456, 0x0000_0102),
            Ok([9, 0x00, 0x01, 0x02, 0x12, 0x34, 0x56, 0x00, 0, 0, 0])
        );
        assert_eq!(
            tag_header(TagType::Audio, 0, 0),
            Ok([8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        );
        assert_eq!(
            tag_header(TagType::Script, 1000, MAX_DATA_LEN),
            Ok([18, 0xFF, 0xFF, 0xFF, 0x00, 0x03, 0xE8, 0x00, 0, 0, 0])
        );
    }

    #[test]
    fn tag_header_extended_timestamp() {
        // 0x01234567 ms: low 24 bits in the timestamp field, 0x01 in the extended byte.
        assert_eq!(
            tag_header(TagType::Video, 0x0123_4567, 5),
            Ok([9, 0, 0, 5, 0x23, 0x45, 0x67, 0x01, 0, 0, 0])
        );
        assert_eq!(
            tag_header(TagType::Audio, u32::MAX, 1),
            Ok([8, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0])
        );
    }

    #[test]
    fn tag_header_rejects_oversized_data() {
        assert_eq!(
            tag_header(TagType::Video, 0, MAX_DATA_LEN + 1),
            Err(Error::DataTooLong(MAX_DATA_LEN + 1))
        );
        let tag = Tag {
            tag_type: TagType::Video,
            timestamp: 0,
            data: Bytes::from(vec![0; MAX_DATA_LEN + 1]),
        };
        let mut out = BytesMut::new();
        assert!(encode_tag(&tag, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn other_tag_type_never_sets_filter_bit() {
        let h = tag_header(TagType::Other(0xFF), 0, 0).expect("fits");
        assert_eq!(h[0], 0x1F);
    }

    #[test]
    fn previous_tag_size_exact() {
        assert_eq!(previous_tag_size(0), [0, 0, 0, 11]);
        assert_eq!(previous_tag_size(0x0102), [0, 0, 0x01, 0x0D]);
        assert_eq!(previous_tag_size(MAX_DATA_LEN), [0x01, 0x00, 0x00, 0x0A]);
        assert_eq!(previous_tag_size(usize::MAX), [0xFF; 4]);
    }

    #[test]
    fn encode_tag_exact() {
        let tag = Tag {
            tag_type: TagType::Audio,
            timestamp: 0x0100_0002,
            data: Bytes::from_static(&[0xAF, 0x01, 0x21]),
        };
        let mut out = BytesMut::new();
        encode_tag(&tag, &mut out).expect("fits");
        assert_eq!(
            &out[..],
            &[
                8, 0, 0, 3, 0, 0, 2, 1, 0, 0, 0, // header
                0xAF, 0x01, 0x21, // data
                0, 0, 0, 14, // previous tag size
            ]
        );
        assert_eq!(out.len(), tag.encoded_len());
    }

    #[test]
    fn tag_type_conversions() {
        for t in 0..=u8::MAX {
            assert_eq!(TagType::from(t).as_u8(), t);
            assert_eq!(u8::from(TagType::from(t)), t);
        }
        assert_eq!(TagType::from(8), TagType::Audio);
        assert_eq!(TagType::from(9), TagType::Video);
        assert_eq!(TagType::from(18), TagType::Script);
        assert_eq!(TagType::from(15), TagType::Other(15));
    }
}
