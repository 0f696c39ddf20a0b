//! The GOP cache: what a joining player needs to start at a keyframe at once.

use std::collections::VecDeque;
use std::sync::Arc;

use super::Frame;
use crate::rtmp::session::MediaKind;

/// How much audio the cache of a stream without video keeps: with no keyframes to go by,
/// any audio frame is a place to start, and a second is what a player's buffer wants
/// without adding a GOP's worth of delay. Capped by the cache's own duration cap.
pub const AUDIO_ONLY_MS: u32 = 1000;

/// The last metadata, the audio and video sequence headers (one per Enhanced RTMP track),
/// and every frame since the last video keyframe (the GOP), capped by bytes and duration;
/// past a cap the GOP empties and waits for the next keyframe. A stream without video
/// keeps its last [`AUDIO_ONLY_MS`] of audio instead. Snapshots hand out references,
/// never copies.
#[derive(Debug)]
pub struct GopCache {
    enabled: bool,
    max_bytes: usize,
    max_ms: u32,
    metadata: Option<Arc<Frame>>,
    /// Sequence headers by (kind, track), in arrival order of their first version.
    headers: Vec<Arc<Frame>>,
    /// Whether any video (a sequence header or a picture) arrived since the reset.
    has_video: bool,
    gop: VecDeque<Arc<Frame>>,
    bytes: usize,
}

impl GopCache {
    /// The stream's metadata, if it sent any.
    pub fn metadata(&self) -> Option<&Arc<Frame>> {
        self.metadata.as_ref()
    }

    /// The sequence headers, one per (kind, track).
    pub fn headers(&self) -> &[Arc<Frame>] {
        &self.headers
    }

    /// Frames in the cached GOP.
    pub fn frames(&self) -> usize {
        self.gop.len()
    }

    /// What the cached GOP costs ([`Frame::cost`] of each frame).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// An empty cache; with `enabled` false it keeps only metadata and sequence headers.
    pub fn new(enabled: bool, max_bytes: usize, max_ms: u32) -> GopCache {
        GopCache {
            enabled,
            max_bytes,
            max_ms,
            metadata: None,
            headers: Vec::new(),
            has_video: false,
            gop: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Forgets everything (a new publisher brings new headers).
    pub fn reset(&mut self) {
        self.metadata = None;
        self.headers.clear();
        self.has_video = false;
        self.clear_gop();
    }

    fn clear_gop(&mut self) {
        self.gop.clear();
        self.bytes = 0;
    }

    /// Whether the stream has video (so only a video keyframe is a place to start).
    pub fn has_video(&self) -> bool {
        self.has_video
    }

    /// Records a live frame.
    pub fn push(&mut self, f: &Arc<Frame>) {
        if f.clears_metadata {
            self.metadata = None;
            return;
        }
        if f.metadata {
            self.metadata = Some(f.clone());
            return;
        }
        if f.kind == MediaKind::Video && !self.has_video {
            // Audio cached as if the stream had no video is no place to start a picture.
            self.has_video = true;
            self.clear_gop();
        }
        if f.sequence_header {
            match self
                .headers
                .iter_mut()
                .find(|h| h.kind == f.kind && h.track == f.track)
            {
                Some(h) => *h = f.clone(),
                None => self.headers.push(f.clone()),
            }
            return;
        }
        if !self.enabled {
            return;
        }
        if !self.has_video {
            self.push_audio_only(f);
            return;
        }
        if f.keyframe {
            self.clear_gop();
        } else if self.gop.is_empty() {
            // No keyframe yet (or the cap emptied the cache): nothing to start from.
            return;
        }
        self.bytes += f.cost();
        self.gop.push_back(f.clone());
        if self.bytes > self.max_bytes || self.span(f) > self.max_ms {
            self.clear_gop();
        }
    }

    /// Milliseconds from the first cached frame to `f` (0 when `f` is older: a timestamp
    /// that went back is not a span).
    fn span(&self, f: &Frame) -> u32 {
        let span = self
            .gop
            .front()
            .map_or(0, |k| f.timestamp.wrapping_sub(k.timestamp));
        if span < 0x8000_0000 { span } else { 0 }
    }

    /// A stream without video: keep the last [`AUDIO_ONLY_MS`] (within the caps).
    fn push_audio_only(&mut self, f: &Arc<Frame>) {
        if f.kind != MediaKind::Audio && self.gop.is_empty() {
            return;
        }
        self.bytes += f.cost();
        self.gop.push_back(f.clone());
        let window = AUDIO_ONLY_MS.min(self.max_ms);
        while self.gop.len() > 1 && (self.bytes > self.max_bytes || self.span(f) > window) {
            if let Some(old) = self.gop.pop_front() {
                self.bytes -= old.cost();
            }
        }
        // Start at audio: data that led the window is no place to start.
        while self.gop.front().is_some_and(|g| g.kind != MediaKind::Audio) {
            if let Some(old) = self.gop.pop_front() {
                self.bytes -= old.cost();
            }
        }
    }

    /// What a joining player gets, in order: metadata, sequence headers, the GOP.
    pub fn snapshot(&self) -> Vec<Arc<Frame>> {
        let mut v = Vec::with_capacity(1 + self.headers.len() + self.gop.len());
        v.extend(self.metadata.iter().cloned());
        // Video headers before audio ones, as encoders send them.
        v.extend(
            self.headers
                .iter()
                .filter(|h| h.kind == MediaKind::Video)
                .cloned(),
        );
        v.extend(
            self.headers
                .iter()
                .filter(|h| h.kind != MediaKind::Video)
                .cloned(),
        );
        v.extend(self.gop.iter().cloned());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn audio(ts: u32) -> Arc<Frame> {
        Frame::media(
            MediaKind::Audio,
            ts,
            Bytes::from_static(&[0xAF, 1, 9]),
            4096,
        )
    }

    fn video(ts: u32, payload: &'static [u8]) -> Arc<Frame> {
        Frame::media(MediaKind::Video, ts, Bytes::from_static(payload), 4096)
    }

    #[test]
    fn an_audio_only_stream_caches_its_last_second_of_audio() {
        let mut c = GopCache::new(true, 1 << 20, 10_000);
        c.push(&Frame::media(
            MediaKind::Audio,
            0,
            Bytes::from_static(&[0xAF, 0, 0x12, 0x10]),
            4096,
        ));
        for i in 0..100 {
            c.push(&audio(i * 23));
        }
        let snap = c.snapshot();
        assert!(snap[0].sequence_header, "the AAC header first");
        let first = snap[1].timestamp;
        let last = snap[snap.len() - 1].timestamp;
        assert_eq!(last, 99 * 23);
        assert!(last - first <= AUDIO_ONLY_MS && last - first > AUDIO_ONLY_MS - 50);
        // The window is capped by the cache's duration cap too.
        let mut c = GopCache::new(true, 1 << 20, 200);
        for i in 0..100 {
            c.push(&audio(i * 23));
        }
        let snap = c.snapshot();
        assert!(snap[snap.len() - 1].timestamp - snap[0].timestamp <= 200);
        // No cache: nothing but headers.
        let mut c = GopCache::new(false, 1 << 20, 10_000);
        c.push(&audio(0));
        assert!(c.snapshot().is_empty());
    }

    #[test]
    fn video_turns_an_audio_cache_into_a_gop_cache() {
        let mut c = GopCache::new(true, 1 << 20, 10_000);
        c.push(&audio(0));
        c.push(&audio(23));
        assert_eq!(c.snapshot().len(), 2);
        c.push(&video(40, &[0x17, 0, 0, 0, 0, 1]));
        assert!(c.has_video());
        assert_eq!(
            c.snapshot().len(),
            1,
            "only the video header: wait for a keyframe"
        );
        c.push(&audio(46));
        assert_eq!(c.snapshot().len(), 1);
        c.push(&video(80, &[0x17, 1, 0, 0, 0, 5]));
        c.push(&audio(86));
        assert_eq!(c.snapshot().len(), 3);
    }

    #[test]
    fn each_multitrack_track_keeps_its_own_sequence_header() {
        let mut c = GopCache::new(true, 1 << 20, 10_000);
        // Enhanced Multitrack OneTrack SequenceStart of tracks 0 and 1, then track 0 again.
        c.push(&video(0, &[0x96, 0x00, b'a', b'v', b'0', b'1', 0, 1]));
        c.push(&video(0, &[0x96, 0x00, b'a', b'v', b'0', b'1', 1, 2]));
        c.push(&video(0, &[0x96, 0x00, b'a', b'v', b'0', b'1', 0, 3]));
        let snap = c.snapshot();
        assert_eq!(snap.len(), 2);
        assert_eq!(snap[0].payload.last(), Some(&3));
        assert_eq!(snap[1].payload.last(), Some(&2));
        // A multitrack keyframe starts the GOP.
        c.push(&video(40, &[0x96, 0x01, b'a', b'v', b'0', b'1', 0, 7]));
        c.push(&video(80, &[0xA6, 0x01, b'a', b'v', b'0', b'1', 0, 8]));
        assert_eq!(c.snapshot().len(), 4);
    }

    #[test]
    fn clear_data_frame_forgets_the_metadata() {
        let mut c = GopCache::new(true, 1 << 20, 10_000);
        c.push(&Frame::metadata(0, Bytes::from_static(b"m1"), 4096));
        assert!(c.snapshot()[0].metadata);
        c.push(&Frame::metadata(0, Bytes::from_static(b"m2"), 4096));
        assert_eq!(&c.snapshot()[0].payload[..], b"m2");
        c.push(&Frame::clear_metadata(0, Bytes::from_static(b"c"), 4096));
        assert!(c.snapshot().is_empty());
    }
}
