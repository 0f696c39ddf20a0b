//! The publisher: a synthetic H.264 + AAC stream paced in real time (every video frame
//! stamped, see [`crate::stamp`]), or a real FLV file published in a loop.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use ringcast::relay::RtmpUrl;
use ringcast::relay::session::RelayConn;
use ringcast::rtmp::amf0::Value;
use ringcast::rtmp::session::client::{Client, ClientConfig, Intent};
use ringcast::rtmp::session::{Media, MediaKind};
use tokio::time::sleep_until;

use crate::stamp::{self, Stamp};
use crate::target::Target;
use ringcast::runtime::{Io, Stream, spawn};

/// An AVCDecoderConfigurationRecord as an FLV video tag body (keyframe, AVC, sequence
/// header): High profile, level 3.1, 1280x720, made by x264 (a real SPS and PPS).
pub const AVC_SEQUENCE_HEADER: [u8; 52] = [
    0x17, 0x00, 0x00, 0x00, 0x00, 0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x1a, 0x67, 0x64, 0x00,
    0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00,
    0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0,
    0xfd, 0xf8, 0xf8, 0x00,
];
/// AAC sequence header: AAC (10), 44.1 kHz, 16-bit, stereo; AudioSpecificConfig of AAC-LC,
/// 44.1 kHz, 2 channels.
pub const AAC_SEQUENCE_HEADER: [u8; 4] = [0xAF, 0x00, 0x12, 0x10];
/// AAC frames are 1024 samples at 44.1 kHz.
const AAC_FRAME: Duration = Duration::from_nanos(1024 * 1_000_000_000 / 44_100);
/// The synthetic audio bit rate.
const AUDIO_BPS: u64 = 128_000;

/// What the synthetic publisher sends.
#[derive(Debug, Clone)]
pub struct Synth {
    /// Video bit rate, bit/s.
    pub bitrate: u64,
    /// Frames per second.
    pub fps: u32,
    /// Keyframe interval.
    pub gop: Duration,
    /// Whether to send AAC audio too.
    pub audio: bool,
}

impl Synth {
    /// Frame sizes: (keyframe, inter frame), so one GOP averages the bit rate with a
    /// keyframe about five times an inter frame.
    pub fn frame_sizes(&self) -> (usize, usize) {
        let fps = self.fps.max(1) as f64;
        let avg = self.bitrate as f64 / 8.0 / fps;
        let per_gop = (self.gop.as_secs_f64() * fps).round().max(1.0);
        if per_gop <= 1.0 {
            return (avg as usize, avg as usize);
        }
        let inter = avg * per_gop / (per_gop + 4.0);
        (
            (inter * 5.0).max(stamp::MIN_FRAME as f64) as usize,
            inter.max(stamp::MIN_FRAME as f64) as usize,
        )
    }

    fn metadata(&self) -> Value {
        Value::EcmaArray(vec![
            ("width".into(), Value::Number(1280.0)),
            ("height".into(), Value::Number(720.0)),
            ("framerate".into(), Value::Number(f64::from(self.fps))),
            ("videocodecid".into(), Value::Number(7.0)),
            (
                "videodatarate".into(),
                Value::Number(self.bitrate as f64 / 1000.0),
            ),
            ("audiocodecid".into(), Value::Number(10.0)),
            ("audiosamplerate".into(), Value::Number(44_100.0)),
            (
                "audiodatarate".into(),
                Value::Number(AUDIO_BPS as f64 / 1000.0),
            ),
            ("stereo".into(), Value::Boolean(true)),
            ("encoder".into(), Value::from("ringcast loadtest")),
        ])
    }
}

/// The publisher's account of its run.
#[derive(Debug, Default, Clone)]
pub struct Published {
    /// Video frames sent.
    pub frames: u64,
    /// Bytes written.
    pub bytes: u64,
    /// How far behind schedule the worst send was, ms.
    pub max_late_ms: f64,
}

/// A connected, publishing RTMP session.
struct Conn {
    stream: Rc<Stream>,
    client: Rc<RefCell<Client>>,
    bytes: u64,
}

impl Drop for Conn {
    /// The publisher leaves: the connection closes whether publishing ended cleanly, failed,
    /// or was cut off (its future dropped), and the task reading the server's replies ends.
    fn drop(&mut self) {
        self.stream.shutdown_both();
    }
}

impl Conn {
    async fn flush(&mut self) -> anyhow::Result<()> {
        let out = self.client.borrow_mut().take_output();
        self.bytes += out.len() as u64;
        self.stream.write_all(out.freeze()).await?;
        Ok(())
    }

    fn send(&mut self, kind: MediaKind, timestamp: u32, payload: Bytes) {
        self.client.borrow_mut().send_media(&Media {
            kind,
            timestamp,
            payload,
        });
    }
}

/// Connects and waits for `NetStream.Publish.Start`, with the library's relay drive loop
/// (the same connect, handshake and start that a ringcast push uses).
async fn connect(io: Io, target: &Target) -> anyhow::Result<Conn> {
    let cfg = ClientConfig::new(
        &target.app,
        &target.tc_url,
        Intent::Publish(target.stream.clone()),
    );
    let url = RtmpUrl {
        authority: target.addr.to_string(),
        app: None,
        stream: None,
    };
    let (conn, _) = RelayConn::open(io, &url, cfg, Duration::from_secs(10), 0x5EED).await?;
    conn.flush().await?;
    let (stream, client) = (conn.stream.clone(), conn.client.clone());
    // Keep reading (acknowledgements, pings) for the rest of the run; replies go out with
    // the next media write.
    spawn(async move {
        let mut conn = conn;
        while conn.read_events().await.is_ok() {}
    });
    Ok(Conn {
        stream,
        client,
        bytes: 0,
    })
}

/// Publishes the synthetic stream until `until`, as a publisher session of its own (a
/// fresh [`stamp::new_session`] in every frame's stamp), then unpublishes and closes the
/// connection. `on_start` runs once publishing started. Dropping the future before the end
/// closes the connection without unpublishing (a publisher that vanishes).
pub async fn synthetic(
    io: Io,
    target: Target,
    synth: Synth,
    until: Instant,
    on_start: impl FnOnce(),
) -> anyhow::Result<Published> {
    let mut conn = connect(io, &target).await?;
    on_start();
    let start = Instant::now();
    let (key_size, inter_size) = synth.frame_sizes();
    let per_gop = (synth.gop.as_secs_f64() * f64::from(synth.fps))
        .round()
        .max(1.0) as u64;
    let frame_interval = Duration::from_secs_f64(1.0 / f64::from(synth.fps.max(1)));
    let audio_size = (AUDIO_BPS / 8 * 1024 / 44_100) as usize;
    let session = stamp::new_session();

    conn.client.borrow_mut().send_metadata(0, &synth.metadata());
    conn.send(
        MediaKind::Video,
        0,
        Bytes::from_static(&AVC_SEQUENCE_HEADER),
    );
    if synth.audio {
        conn.send(
            MediaKind::Audio,
            0,
            Bytes::from_static(&AAC_SEQUENCE_HEADER),
        );
    }
    conn.flush().await?;

    let mut done = Published::default();
    let mut seq = 0u64;
    let mut audio_n = 0u64;
    loop {
        let due_video = start + frame_interval.mul_f64(seq as f64);
        let due_audio = start + AAC_FRAME.mul_f64(audio_n as f64);
        let (due, video) = if !synth.audio || due_video <= due_audio {
            (due_video, true)
        } else {
            (due_audio, false)
        };
        if due >= until {
            break;
        }
        sleep_until(due.into()).await;
        let late = Instant::now().saturating_duration_since(due).as_secs_f64() * 1000.0;
        done.max_late_ms = done.max_late_ms.max(late);
        let ts = due.duration_since(start).as_millis() as u32;
        if video {
            let key = seq % per_gop == 0;
            let size = if key { key_size } else { inter_size };
            let payload = stamp::frame(
                key,
                Stamp {
                    session,
                    seq,
                    send_ns: stamp::realtime_ns(),
                },
                size,
            );
            conn.send(MediaKind::Video, ts, payload);
            seq += 1;
            done.frames += 1;
        } else {
            let mut a = vec![0x5Au8; audio_size.max(2)];
            a[0] = 0xAF;
            a[1] = 0x01;
            conn.send(MediaKind::Audio, ts, Bytes::from(a));
            audio_n += 1;
        }
        conn.flush().await?;
    }
    conn.client.borrow_mut().stop();
    conn.flush().await?;
    done.bytes = conn.bytes;
    Ok(done)
}

/// Publishes the tags of an FLV file in a loop, paced by their timestamps, until `until`.
pub async fn from_file(
    io: Io,
    target: Target,
    tags: Vec<ringcast::flv::Tag>,
    until: Instant,
    on_start: impl FnOnce(),
) -> anyhow::Result<Published> {
    use ringcast::flv::TagType;
    if tags.is_empty() {
        bail!("the input file has no tags");
    }
    let mut conn = connect(io, &target).await?;
    on_start();
    let start = Instant::now();
    let first = tags.first().map_or(0, |t| t.timestamp);
    let span = tags
        .iter()
        .map(|t| t.timestamp.wrapping_sub(first))
        .max()
        .unwrap_or(0)
        .saturating_add(40);
    let mut done = Published::default();
    for lap in 0u32.. {
        for tag in &tags {
            let rel = tag.timestamp.wrapping_sub(first);
            let ts = lap.wrapping_mul(span).wrapping_add(rel);
            let due = start + Duration::from_millis(u64::from(ts));
            if due >= until {
                conn.client.borrow_mut().stop();
                conn.flush().await?;
                done.bytes = conn.bytes;
                return Ok(done);
            }
            sleep_until(due.into()).await;
            let kind = match tag.tag_type {
                TagType::Audio => MediaKind::Audio,
                TagType::Video => {
                    done.frames += 1;
                    MediaKind::Video
                }
                TagType::Script => {
                    // Metadata only once; other script tags are data messages.
                    if lap > 0
                        && ringcast::rtmp::message::data_name(&tag.data).as_deref()
                            == Some("onMetaData")
                    {
                        continue;
                    }
                    MediaKind::Data
                }
                _ => continue,
            };
            // Sequence headers are sent once, on the first lap.
            let seq_header = match kind {
                MediaKind::Video => ringcast::flv::is_video_sequence_header(&tag.data),
                MediaKind::Audio => ringcast::flv::is_audio_sequence_header(&tag.data),
                MediaKind::Data => false,
            };
            if lap > 0 && seq_header {
                continue;
            }
            conn.send(kind, ts, tag.data.clone());
            conn.flush().await?;
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_sizes_average_the_bit_rate() {
        let s = Synth {
            bitrate: 1_000_000,
            fps: 30,
            gop: Duration::from_secs(2),
            audio: false,
        };
        let (k, i) = s.frame_sizes();
        let per_gop = (k + 59 * i) as f64;
        let want = 1_000_000.0 / 8.0 * 2.0;
        assert!((per_gop - want).abs() / want < 0.01, "{k} {i}");
        assert!(k > 4 * i);
    }

    #[test]
    fn sequence_headers_are_what_decoders_expect() {
        // AVCDecoderConfigurationRecord: version 1, profile 100 (High), one SPS, one PPS.
        let r = &AVC_SEQUENCE_HEADER[5..];
        assert_eq!((r[0], r[1]), (1, 100));
        assert_eq!(r[5] & 0x1F, 1);
        let sps_len = usize::from(u16::from_be_bytes([r[6], r[7]]));
        assert_eq!(r[8] & 0x1F, 7, "an SPS NAL unit");
        let pps = 8 + sps_len;
        assert_eq!(r[pps], 1);
        assert_eq!(r[pps + 3] & 0x1F, 8, "a PPS NAL unit");
        // AudioSpecificConfig: object type 2 (AAC-LC), frequency index 4 (44.1 kHz), 2 ch.
        let asc = u16::from_be_bytes([AAC_SEQUENCE_HEADER[2], AAC_SEQUENCE_HEADER[3]]);
        assert_eq!((asc >> 11, (asc >> 7) & 0xF, (asc >> 3) & 0xF), (2, 4, 2));
    }
}
