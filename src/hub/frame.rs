//! One media message, encoded once and shared by every player on every core.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::flv;
use crate::rtmp::chunk::{self, csid};
use crate::rtmp::message::type_id;
use crate::rtmp::session::MediaKind;

/// The message stream id players receive frames on: `createStream` answers 1 first.
pub const PLAYER_STREAM_ID: u32 = 1;

/// What a frame costs beside its encoded bytes: the `Frame` itself, its `Arc`, the headers of
/// its two byte buffers and a queue slot, rounded up. Caps on queues and caches count it, so
/// a flood of tiny messages is held to the same memory as a few large ones.
pub const FRAME_OVERHEAD: usize = 192;

/// A media, data or metadata message of a stream with its RTMP encoding.
///
/// `rtmp` is the message cut into chunks of the server's chunk size, starting with a full
/// fmt 0 header on message stream 1, so the same bytes are valid for every player whatever
/// was sent to it before. Cloning the `Arc` is all a player costs.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    /// Audio, video or data.
    pub kind: MediaKind,
    /// The publisher's timestamp, ms.
    pub timestamp: u32,
    /// The FLV tag body (the RTMP message body), shared with the publisher's receive buffer.
    pub payload: Bytes,
    /// The RTMP chunks players are sent.
    pub rtmp: Bytes,
    /// The FLV tag around `payload` for HTTP-FLV and WebSocket-FLV players: the 11-byte tag
    /// header, then the 4-byte PreviousTagSize ([`Frame::flv_header`],
    /// [`Frame::flv_trailer`]). A player writes them and the shared payload as three
    /// buffers: the payload is never copied.
    pub flv: Bytes,
    /// A video keyframe carrying coded frames: where a GOP, and a player, may start.
    pub keyframe: bool,
    /// An AVC/HEVC/Enhanced video or AAC/Enhanced audio sequence header.
    pub sequence_header: bool,
    /// The stream's `onMetaData`.
    pub metadata: bool,
    /// `@clearDataFrame`: the stream's metadata is cleared from here on.
    pub clears_metadata: bool,
    /// The Enhanced RTMP track of a Multitrack sequence header (0 for every other frame):
    /// each track has its own decoder configuration.
    pub track: u8,
    /// When the message was fully received from its publisher (delivery latency counts
    /// from here).
    pub received: Instant,
}

impl Frame {
    /// The memory this frame is counted for in queue and cache caps: its RTMP encoding plus
    /// [`FRAME_OVERHEAD`].
    pub fn cost(&self) -> usize {
        self.rtmp.len() + FRAME_OVERHEAD
    }

    /// A media or data frame, encoded once with `chunk_size`.
    pub fn media(kind: MediaKind, timestamp: u32, payload: Bytes, chunk_size: u32) -> Arc<Frame> {
        // One look at the tag's first bytes; the track matters only for sequence headers
        // (the cache keeps one per track), so ordinary frames never read it.
        let (keyframe, sequence_header) = match kind {
            MediaKind::Video => flv::video_info(&payload).map_or((false, false), |v| {
                (v.is_coded_keyframe(), v.is_sequence_header())
            }),
            MediaKind::Audio => (false, flv::is_audio_sequence_header(&payload)),
            MediaKind::Data => (false, false),
        };
        let track = if sequence_header {
            flv::track_id(&payload, kind == MediaKind::Video)
        } else {
            0
        };
        let rtmp = encode(
            kind.csid(),
            kind.type_id(),
            timestamp,
            &payload,
            chunk_size,
            PLAYER_STREAM_ID,
        );
        let flv = flv_framing(kind, timestamp, payload.len());
        Arc::new(Frame {
            kind,
            timestamp,
            payload,
            rtmp,
            flv,
            keyframe,
            sequence_header,
            metadata: false,
            clears_metadata: false,
            track,
            received: Instant::now(),
        })
    }

    /// `@clearDataFrame` (its AMF0 body, which players get in place): the cached metadata is
    /// forgotten.
    pub fn clear_metadata(timestamp: u32, body: Bytes, chunk_size: u32) -> Arc<Frame> {
        Frame::data(timestamp, body, chunk_size, false, true)
    }

    /// The stream's metadata (an `"onMetaData", {...}` AMF0 body).
    pub fn metadata(timestamp: u32, body: Bytes, chunk_size: u32) -> Arc<Frame> {
        Frame::data(timestamp, body, chunk_size, true, false)
    }

    fn data(
        timestamp: u32,
        body: Bytes,
        chunk_size: u32,
        metadata: bool,
        clears_metadata: bool,
    ) -> Arc<Frame> {
        let rtmp = encode(
            csid::DATA,
            type_id::DATA,
            timestamp,
            &body,
            chunk_size,
            PLAYER_STREAM_ID,
        );
        let flv = flv_framing(MediaKind::Data, timestamp, body.len());
        Arc::new(Frame {
            kind: MediaKind::Data,
            timestamp,
            payload: body,
            rtmp,
            flv,
            keyframe: false,
            sequence_header: false,
            metadata,
            clears_metadata,
            track: 0,
            received: Instant::now(),
        })
    }

    /// The FLV tag header (11 bytes) of this frame at its own timestamp.
    pub fn flv_header(&self) -> Bytes {
        self.flv.slice(..flv::TAG_HEADER_LEN)
    }

    /// The FLV tag header of this frame moved to `timestamp` (a player whose timeline was
    /// rebased after a republish): 11 bytes of its own.
    pub fn flv_header_at(&self, timestamp: u32) -> Bytes {
        let mut h = self.flv.slice(..flv::TAG_HEADER_LEN).to_vec();
        let [ext, t2, t1, t0] = timestamp.to_be_bytes();
        h[4..8].copy_from_slice(&[t2, t1, t0, ext]);
        Bytes::from(h)
    }

    /// The FLV PreviousTagSize after this frame's tag (4 bytes).
    pub fn flv_trailer(&self) -> Bytes {
        self.flv.slice(flv::TAG_HEADER_LEN..)
    }

    /// Metadata and sequence headers: what a player must get even when it skips frames.
    pub fn is_config(&self) -> bool {
        self.metadata || self.sequence_header
    }

    /// The RTMP encoding for a player on another message stream id (rare: clients that
    /// created more than one stream); encodes afresh.
    pub fn rtmp_for(&self, stream_id: u32, chunk_size: u32) -> Bytes {
        if stream_id == PLAYER_STREAM_ID {
            return self.rtmp.clone();
        }
        let (csid, ty) = if self.metadata {
            (csid::DATA, type_id::DATA)
        } else {
            (self.kind.csid(), self.kind.type_id())
        };
        encode(
            csid,
            ty,
            self.timestamp,
            &self.payload,
            chunk_size,
            stream_id,
        )
    }
}

/// The FLV tag header and PreviousTagSize of a `kind` tag of `len` bytes at `timestamp`,
/// in one 15-byte buffer. RTMP bodies are at most 24 bits long, as FLV's are.
fn flv_framing(kind: MediaKind, timestamp: u32, len: usize) -> Bytes {
    let tag_type = flv::TagType::from(kind.type_id());
    let mut out = Vec::with_capacity(flv::TAG_HEADER_LEN + flv::PREVIOUS_TAG_SIZE_LEN);
    let header = flv::tag_header(tag_type, timestamp, len.min(flv::MAX_DATA_LEN))
        .unwrap_or([0; flv::TAG_HEADER_LEN]);
    out.extend_from_slice(&header);
    out.extend_from_slice(&flv::previous_tag_size(len.min(flv::MAX_DATA_LEN)));
    Bytes::from(out)
}

fn encode(
    csid: u32,
    type_id: u8,
    timestamp: u32,
    payload: &Bytes,
    chunk_size: u32,
    stream_id: u32,
) -> Bytes {
    let msg = chunk::Message {
        csid,
        timestamp,
        type_id,
        stream_id,
        payload: payload.clone(),
    };
    // encode_shared reserves exactly what the chunks take, extended timestamps included.
    let mut out = BytesMut::new();
    chunk::encode_shared(&msg, chunk_size, &mut out);
    out.freeze()
}
