//! The GOP cache: what a joining player needs to start at a keyframe at once.

use std::sync::Arc;

use super::Frame;
use crate::rtmp::session::MediaKind;

/// The last metadata, the audio and video sequence headers, and every frame since the last
/// video keyframe (the GOP), capped by bytes and duration; past a cap the GOP empties and
/// waits for the next keyframe. Snapshots hand out references, never copies.
#[derive(Debug)]
pub struct GopCache {
    enabled: bool,
    max_bytes: usize,
    max_ms: u32,
    metadata: Option<Arc<Frame>>,
    video_header: Option<Arc<Frame>>,
    audio_header: Option<Arc<Frame>>,
    gop: Vec<Arc<Frame>>,
    bytes: usize,
}

impl GopCache {
    /// An empty cache; with `enabled` false it keeps only metadata and sequence headers.
    pub fn new(enabled: bool, max_bytes: usize, max_ms: u32) -> GopCache {
        GopCache {
            enabled,
            max_bytes,
            max_ms,
            metadata: None,
            video_header: None,
            audio_header: None,
            gop: Vec::new(),
            bytes: 0,
        }
    }

    /// Forgets everything (a new publisher brings new headers).
    pub fn reset(&mut self) {
        self.metadata = None;
        self.video_header = None;
        self.audio_header = None;
        self.gop.clear();
        self.bytes = 0;
    }

    /// Records a live frame.
    pub fn push(&mut self, f: &Arc<Frame>) {
        if f.metadata {
            self.metadata = Some(f.clone());
            return;
        }
        if f.sequence_header {
            match f.kind {
                MediaKind::Video => self.video_header = Some(f.clone()),
                _ => self.audio_header = Some(f.clone()),
            }
            return;
        }
        if !self.enabled {
            return;
        }
        if f.keyframe {
            self.gop.clear();
            self.bytes = 0;
        } else if self.gop.is_empty() {
            // No keyframe yet (or the cap emptied the cache): nothing to start from.
            return;
        }
        self.bytes += f.rtmp.len();
        self.gop.push(f.clone());
        let span = self
            .gop
            .first()
            .map_or(0, |k| f.timestamp.wrapping_sub(k.timestamp));
        if self.bytes > self.max_bytes || (span > self.max_ms && span < 0x8000_0000) {
            self.gop.clear();
            self.bytes = 0;
        }
    }

    /// What a joining player gets, in order: metadata, sequence headers, the GOP.
    pub fn snapshot(&self) -> Vec<Arc<Frame>> {
        let mut v = Vec::with_capacity(3 + self.gop.len());
        v.extend(self.metadata.iter().cloned());
        v.extend(self.video_header.iter().cloned());
        v.extend(self.audio_header.iter().cloned());
        v.extend(self.gop.iter().cloned());
        v
    }
}
