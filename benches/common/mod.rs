//! A synthetic 2 Mbit/s-like stream shared by the chunk benches.

use bytes::Bytes;
use ringcast::rtmp::chunk::{Message, csid};

/// Ten seconds of a stream shaped like a 2 Mbit/s H.264 + AAC encode: 30 fps video with a
/// keyframe every 2 s (about 5x an inter frame) and 43 AAC frames a second of ~370 bytes,
/// interleaved in timestamp order as an encoder sends them.
pub fn stream_2mbit(seconds: u32) -> Vec<Message> {
    let bytes_per_frame = 2_000_000 / 8 / 30;
    let keyframe = bytes_per_frame * 5;
    let inter = (bytes_per_frame * 60 - keyframe) / 59;
    let mut out = Vec::new();
    let mut audio_ts = 0u32;
    let mut fill = 0u8;
    let mut body = |len: usize| {
        fill = fill.wrapping_add(1);
        Bytes::from(vec![fill; len])
    };
    for frame in 0..seconds * 30 {
        let ts = frame * 1000 / 30;
        while audio_ts <= ts {
            out.push(Message {
                csid: csid::AUDIO,
                timestamp: audio_ts,
                type_id: 8,
                stream_id: 1,
                payload: body(372),
            });
            audio_ts += 23;
        }
        let len = if frame % 60 == 0 { keyframe } else { inter };
        out.push(Message {
            csid: csid::VIDEO,
            timestamp: ts,
            type_id: 9,
            stream_id: 1,
            payload: body(len),
        });
    }
    out
}
