//! Codec sniffing: what an audio or video tag's first bytes say about its payload.
//!
//! The hub's GOP cache needs to know which video tags are keyframes and which audio and
//! video tags are sequence headers (decoder configuration that every late joiner needs).
//! Both legacy FLV (FLV 10.1 §E.4.2.1 AUDIODATA, §E.4.3.1 VIDEODATA) and Enhanced RTMP
//! (v1 and v2: ExVideoTagHeader, ExAudioTagHeader, with FourCC codec ids) are understood.
//!
//! Every function here reads only the first few bytes, returns `None` (or `false`) when
//! they are missing or make no sense, and never panics.

/// Video FrameType (FLV 10.1 §E.4.3.1; three bits under Enhanced RTMP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameType {
    /// 1: a keyframe (seekable). Sequence headers carry this frame type too.
    Key,
    /// 2: an inter frame.
    Inter,
    /// 3: a disposable inter frame (H.263 only).
    DisposableInter,
    /// 4: a generated keyframe (reserved for server use).
    GeneratedKey,
    /// 5: a video info / command frame: no picture, a command byte instead.
    Command,
    /// Any other (reserved) value.
    Other(u8),
}

impl FrameType {
    fn from_bits(v: u8) -> FrameType {
        match v {
            1 => FrameType::Key,
            2 => FrameType::Inter,
            3 => FrameType::DisposableInter,
            4 => FrameType::GeneratedKey,
            5 => FrameType::Command,
            v => FrameType::Other(v),
        }
    }
}

/// The video codec of a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    /// H.264: legacy codec id 7, or Enhanced FourCC `avc1`.
    Avc,
    /// H.265: codec id 12 (a widespread legacy extension), or Enhanced FourCC `hvc1`.
    Hevc,
    /// AV1: Enhanced FourCC `av01`.
    Av1,
    /// VP9: Enhanced FourCC `vp09`.
    Vp9,
    /// Another legacy codec id: 2 Sorenson H.263, 3 Screen video, 4 VP6, 5 VP6 with alpha,
    /// 6 Screen video v2, or a reserved value.
    Legacy(u8),
    /// Another Enhanced RTMP FourCC (such as `vp08`).
    FourCc([u8; 4]),
    /// An Enhanced RTMP command frame, which names no codec.
    Unspecified,
}

impl VideoCodec {
    fn from_fourcc(fourcc: [u8; 4]) -> VideoCodec {
        match &fourcc {
            b"avc1" => VideoCodec::Avc,
            b"hvc1" => VideoCodec::Hevc,
            b"av01" => VideoCodec::Av1,
            b"vp09" => VideoCodec::Vp9,
            _ => VideoCodec::FourCc(fourcc),
        }
    }
}

/// What a video tag carries: the AVCPacketType of legacy AVC/HEVC, or the Enhanced RTMP
/// VideoPacketType.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoPacket {
    /// 0: decoder configuration (AVC/HEVC sequence header, AV1/VP9 SequenceStart).
    SequenceStart,
    /// 1: coded frames (legacy AVC NALUs, with a composition time). Legacy codecs without
    /// a packet type byte (H.263, VP6, ...) always report this.
    CodedFrames,
    /// 2: end of sequence.
    SequenceEnd,
    /// 3 (Enhanced): coded frames with an implicit composition time of zero.
    CodedFramesX,
    /// 4 (Enhanced): AMF metadata such as `colorInfo`, not a picture.
    Metadata,
    /// 5 (Enhanced): decoder configuration in MPEG-2 TS form (AV1).
    Mpeg2TsSequenceStart,
    /// A command frame ([`FrameType::Command`]): a command byte, not a packet type.
    Command,
    /// Any other value. A Multitrack (6) tag reports its inner packet type instead.
    Other(u8),
}

impl VideoPacket {
    fn from_legacy(v: u8) -> VideoPacket {
        match v {
            0 => VideoPacket::SequenceStart,
            1 => VideoPacket::CodedFrames,
            2 => VideoPacket::SequenceEnd,
            v => VideoPacket::Other(v),
        }
    }

    fn from_enhanced(v: u8) -> VideoPacket {
        match v {
            0 => VideoPacket::SequenceStart,
            1 => VideoPacket::CodedFrames,
            2 => VideoPacket::SequenceEnd,
            3 => VideoPacket::CodedFramesX,
            4 => VideoPacket::Metadata,
            5 => VideoPacket::Mpeg2TsSequenceStart,
            v => VideoPacket::Other(v),
        }
    }
}

/// What the first bytes of a video tag say. See [`video_info`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VideoInfo {
    /// The frame type.
    pub frame_type: FrameType,
    /// The codec.
    pub codec: VideoCodec,
    /// The packet type.
    pub packet: VideoPacket,
}

impl VideoInfo {
    /// Whether the frame type is a keyframe (or a generated keyframe). This is true for
    /// sequence headers too, which encoders mark as keyframes; see
    /// [`VideoInfo::is_coded_keyframe`] for a keyframe picture. Metadata packets, whose frame
    /// type Enhanced RTMP says to ignore, are never keyframes.
    pub fn is_keyframe(&self) -> bool {
        matches!(self.frame_type, FrameType::Key | FrameType::GeneratedKey)
            && !matches!(self.packet, VideoPacket::Metadata | VideoPacket::Command)
    }

    /// Whether this is a keyframe picture: a keyframe carrying coded frames, not a sequence
    /// header, end of sequence or metadata. This is where a GOP starts.
    pub fn is_coded_keyframe(&self) -> bool {
        self.is_keyframe()
            && matches!(
                self.packet,
                VideoPacket::CodedFrames | VideoPacket::CodedFramesX
            )
    }

    /// Whether this is decoder configuration: a legacy AVC/HEVC sequence header or an
    /// Enhanced SequenceStart or MPEG2TSSequenceStart.
    pub fn is_sequence_header(&self) -> bool {
        matches!(
            self.packet,
            VideoPacket::SequenceStart | VideoPacket::Mpeg2TsSequenceStart
        )
    }

    /// Whether this is an end-of-sequence packet.
    pub fn is_end_of_sequence(&self) -> bool {
        self.packet == VideoPacket::SequenceEnd
    }
}

/// The high bit of byte 0 of video tag data: an Enhanced RTMP ExVideoTagHeader follows.
const IS_EX_HEADER: u8 = 0x80;
/// Enhanced video packet type: Metadata.
const VIDEO_METADATA: u8 = 4;
/// Enhanced video packet type: Multitrack.
const VIDEO_MULTITRACK: u8 = 6;
/// Enhanced audio packet type: Multitrack.
const AUDIO_MULTITRACK: u8 = 5;
/// Enhanced RTMP v2 packet type (audio and video): ModEx, a modifier prefix.
const MOD_EX: u8 = 7;
/// Legacy SoundFormat: MP3.
const SOUND_MP3: u8 = 2;
/// SoundFormat 9: Enhanced RTMP ExAudioTagHeader.
const SOUND_EX_HEADER: u8 = 9;
/// Legacy SoundFormat: AAC.
const SOUND_AAC: u8 = 10;

fn fourcc_at(data: &[u8], pos: usize) -> Option<[u8; 4]> {
    data.get(pos..)?.first_chunk::<4>().copied()
}

/// Enhanced RTMP v2 ModEx: while the packet type is ModEx, skip a size-prefixed modifier
/// (UI8 + 1 bytes, or UI16 + 1 when the UI8 form reads 256) and read the next
/// `modExType | packetType` byte. Takes the packet type and the position just after the
/// byte it came from; returns the final packet type and the position after it.
fn skip_mod_ex(data: &[u8], mut packet_type: u8, mut pos: usize) -> Option<(u8, usize)> {
    while packet_type == MOD_EX {
        let mut size = usize::from(*data.get(pos)?) + 1;
        pos += 1;
        if size == 256 {
            let &[hi, lo] = data.get(pos..)?.first_chunk::<2>()?;
            size = usize::from(u16::from_be_bytes([hi, lo])) + 1;
            pos += 2;
        }
        pos = pos.checked_add(size)?;
        packet_type = *data.get(pos)? & 0x0F;
        pos += 1;
    }
    Some((packet_type, pos))
}

/// Reads the frame type, codec and packet type from the start of video tag data.
///
/// Legacy: byte 0 is frame type (high nibble) and codec id (low nibble); AVC and HEVC then
/// have the AVCPacketType in byte 1. Enhanced RTMP (high bit of byte 0 set): frame type in
/// bits 4–6, VideoPacketType in the low nibble, optional ModEx modifiers, then the FourCC
/// (for Multitrack, after the multitrack type byte). An Enhanced command frame has a command
/// byte instead of a FourCC and reports [`VideoCodec::Unspecified`].
///
/// Returns `None` if the data is too short for what byte 0 announces.
pub fn video_info(data: &[u8]) -> Option<VideoInfo> {
    let b0 = *data.first()?;
    if b0 & IS_EX_HEADER == 0 {
        return legacy_video_info(b0, data);
    }
    let frame_type = FrameType::from_bits((b0 >> 4) & 0x07);
    let (packet_type, pos) = skip_mod_ex(data, b0 & 0x0F, 1)?;
    if frame_type == FrameType::Command && packet_type != VIDEO_METADATA {
        // The command byte (0 start seek, 1 end seek) is all there is.
        data.get(pos)?;
        return Some(VideoInfo {
            frame_type,
            codec: VideoCodec::Unspecified,
            packet: VideoPacket::Command,
        });
    }
    let (packet_type, fourcc) = if packet_type == VIDEO_MULTITRACK {
        // multitrackType | inner packet type, then the shared FourCC (or, for
        // ManyTracksManyCodecs, the first track's, at the same place). What the tracks
        // carry is the inner packet type: a keyframe or sequence start of every track.
        (*data.get(pos)? & 0x0F, fourcc_at(data, pos + 1)?)
    } else {
        (packet_type, fourcc_at(data, pos)?)
    };
    Some(VideoInfo {
        frame_type,
        codec: VideoCodec::from_fourcc(fourcc),
        packet: VideoPacket::from_enhanced(packet_type),
    })
}

fn legacy_video_info(b0: u8, data: &[u8]) -> Option<VideoInfo> {
    let frame_type = FrameType::from_bits(b0 >> 4);
    let codec = match b0 & 0x0F {
        7 => VideoCodec::Avc,
        12 => VideoCodec::Hevc,
        id => VideoCodec::Legacy(id),
    };
    let packet = if frame_type == FrameType::Command {
        // The VideoCommand byte follows instead of a packet type or picture.
        data.get(1)?;
        VideoPacket::Command
    } else if matches!(codec, VideoCodec::Avc | VideoCodec::Hevc) {
        VideoPacket::from_legacy(*data.get(1)?)
    } else {
        VideoPacket::CodedFrames
    };
    Some(VideoInfo {
        frame_type,
        codec,
        packet,
    })
}

/// The audio format of a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioFormat {
    /// SoundFormat 10: AAC.
    Aac,
    /// SoundFormat 2: MP3.
    Mp3,
    /// SoundFormat 9, Enhanced RTMP: the FourCC (`Opus`, `fLaC`, `ac-3`, `ec-3`, `.mp3`,
    /// `mp4a`, ...).
    FourCc([u8; 4]),
    /// Any other legacy SoundFormat (0 and 3 PCM, 1 ADPCM, 4–6 Nellymoser, 7 and 8 G.711,
    /// 11 Speex, 14 MP3 8 kHz, 15 device-specific, ...).
    Legacy(u8),
}

/// What the first bytes of an audio tag say. See [`audio_info`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AudioInfo {
    /// The audio format.
    pub format: AudioFormat,
    /// Whether the tag is decoder configuration: an AAC sequence header
    /// (AudioSpecificConfig) or an Enhanced SequenceStart.
    pub is_sequence_header: bool,
}

/// Reads the format and whether this is a sequence header from the start of audio tag data.
///
/// Legacy: byte 0 is SoundFormat (high nibble) plus rate, size and channels; AAC then has
/// the AACPacketType in byte 1 (0 = sequence header). Enhanced RTMP (SoundFormat 9): the low
/// nibble is the AudioPacketType, then optional ModEx modifiers, then the FourCC (for
/// Multitrack, after the multitrack type byte); SequenceStart (0) is the sequence header.
/// A Multitrack packet is a sequence header when its inner packet type is SequenceStart.
///
/// Returns `None` for empty data (an Enhanced RTMP silence message) or data too short for
/// what byte 0 announces.
pub fn audio_info(data: &[u8]) -> Option<AudioInfo> {
    let b0 = *data.first()?;
    let (format, is_sequence_header) = match b0 >> 4 {
        SOUND_AAC => (AudioFormat::Aac, *data.get(1)? == 0),
        SOUND_MP3 => (AudioFormat::Mp3, false),
        SOUND_EX_HEADER => {
            let (packet_type, pos) = skip_mod_ex(data, b0 & 0x0F, 1)?;
            if packet_type == AUDIO_MULTITRACK {
                let inner = *data.get(pos)? & 0x0F;
                (AudioFormat::FourCc(fourcc_at(data, pos + 1)?), inner == 0)
            } else {
                (AudioFormat::FourCc(fourcc_at(data, pos)?), packet_type == 0)
            }
        }
        f => (AudioFormat::Legacy(f), false),
    };
    Some(AudioInfo {
        format,
        is_sequence_header,
    })
}

/// The Enhanced RTMP track id of a Multitrack audio or video tag (its first track's, for
/// a tag carrying several); 0 for every other tag. Sequence headers of different tracks
/// are different decoder configurations, and a joining player needs each of them.
/// `video` tells which kind of tag `data` is.
pub fn track_id(data: &[u8], video: bool) -> u8 {
    multitrack_track_id(data, video).unwrap_or(0)
}

fn multitrack_track_id(data: &[u8], video: bool) -> Option<u8> {
    let b0 = *data.first()?;
    let multitrack = if video && b0 & IS_EX_HEADER != 0 {
        VIDEO_MULTITRACK
    } else if !video && b0 >> 4 == SOUND_EX_HEADER {
        AUDIO_MULTITRACK
    } else {
        return None;
    };
    let (packet_type, pos) = skip_mod_ex(data, b0 & 0x0F, 1)?;
    if packet_type != multitrack {
        return None;
    }
    // multitrackType | packet type (1), FourCC (4), then the track id.
    data.get(pos + 5).copied()
}

/// Whether video tag data is a keyframe picture (not a sequence header): where a GOP
/// starts. See [`VideoInfo::is_coded_keyframe`].
pub fn is_video_keyframe(data: &[u8]) -> bool {
    video_info(data).is_some_and(|v| v.is_coded_keyframe())
}

/// Whether video tag data is decoder configuration. See [`VideoInfo::is_sequence_header`].
pub fn is_video_sequence_header(data: &[u8]) -> bool {
    video_info(data).is_some_and(|v| v.is_sequence_header())
}

/// Whether audio tag data is decoder configuration. See [`audio_info`].
pub fn is_audio_sequence_header(data: &[u8]) -> bool {
    audio_info(data).is_some_and(|a| a.is_sequence_header)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn v(frame_type: FrameType, codec: VideoCodec, packet: VideoPacket) -> Option<VideoInfo> {
        Some(VideoInfo {
            frame_type,
            codec,
            packet,
        })
    }

    fn a(format: AudioFormat, is_sequence_header: bool) -> Option<AudioInfo> {
        Some(AudioInfo {
            format,
            is_sequence_header,
        })
    }

    /// Byte 0 followed by a FourCC and a few payload bytes.
    fn ex(b0: u8, fourcc: &[u8; 4]) -> Vec<u8> {
        let mut d = vec![b0];
        d.extend_from_slice(fourcc);
        d.extend_from_slice(&[0, 0, 0, 0x11, 0x22]);
        d
    }

    #[test]
    fn avc_sequence_header() {
        let d = [0x17, 0x00, 0x00, 0x00, 0x00, 0x01, 0x64, 0x00, 0x1F];
        let info = video_info(&d).expect("parses");
        assert_eq!(
            Some(info),
            v(FrameType::Key, VideoCodec::Avc, VideoPacket::SequenceStart)
        );
        assert!(info.is_keyframe());
        assert!(info.is_sequence_header());
        assert!(!info.is_coded_keyframe());
        assert!(!info.is_end_of_sequence());
        assert!(is_video_sequence_header(&d));
        assert!(!is_video_keyframe(&d));
    }

    #[test]
    fn avc_keyframe_nalu() {
        let d = [0x17, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x65];
        assert_eq!(
            video_info(&d),
            v(FrameType::Key, VideoCodec::Avc, VideoPacket::CodedFrames)
        );
        assert!(is_video_keyframe(&d));
        assert!(!is_video_sequence_header(&d));
    }

    #[test]
    fn avc_inter_frame() {
        let d = [0x27, 0x01, 0x00, 0x00, 0x28, 0x00, 0x00, 0x00, 0x05, 0x41];
        let info = video_info(&d).expect("parses");
        assert_eq!(
            Some(info),
            v(FrameType::Inter, VideoCodec::Avc, VideoPacket::CodedFrames)
        );
        assert!(!info.is_keyframe());
        assert!(!is_video_keyframe(&d));
        assert!(!is_video_sequence_header(&d));
    }

    #[test]
    fn avc_end_of_sequence() {
        let d = [0x17, 0x02, 0, 0, 0];
        let info = video_info(&d).expect("parses");
        assert!(info.is_end_of_sequence());
        assert!(!info.is_sequence_header());
        assert!(!is_video_keyframe(&d));
    }

    #[test]
    fn hevc_legacy_codec_12() {
        let d = [0x1C, 0x00, 0, 0, 0, 0x01];
        assert_eq!(
            video_info(&d),
            v(FrameType::Key, VideoCodec::Hevc, VideoPacket::SequenceStart)
        );
        assert!(is_video_sequence_header(&d));
        assert!(is_video_keyframe(&[0x1C, 0x01, 0, 0, 0]));
        assert!(!is_video_keyframe(&[0x2C, 0x01, 0, 0, 0]));
    }

    #[test]
    fn legacy_other_codecs() {
        // VP6 keyframe, Sorenson H.263 disposable inter frame: no packet type byte.
        assert_eq!(
            video_info(&[0x14]),
            v(
                FrameType::Key,
                VideoCodec::Legacy(4),
                VideoPacket::CodedFrames
            )
        );
        assert!(is_video_keyframe(&[0x14, 0x00]));
        assert_eq!(
            video_info(&[0x32, 0xAA]),
            v(
                FrameType::DisposableInter,
                VideoCodec::Legacy(2),
                VideoPacket::CodedFrames
            )
        );
        // Generated keyframes count as keyframes.
        assert!(is_video_keyframe(&[0x47, 0x01, 0, 0, 0]));
    }

    #[test]
    fn command_frames_are_neither_keyframe_nor_sequence_header() {
        // Legacy: frame type 5 with AVC, command byte 0 (start seek) — it is not an
        // AVCPacketType.
        let info = video_info(&[0x57, 0x00]).expect("parses");
        assert_eq!(
            Some(info),
            v(FrameType::Command, VideoCodec::Avc, VideoPacket::Command)
        );
        assert!(!info.is_keyframe() && !info.is_sequence_header());
        assert!(!is_video_sequence_header(&[0x57, 0x00]));
        assert_eq!(video_info(&[0x57]), None);
        // Enhanced: 0xD0 = ex header, frame type 5, SequenceStart nibble, then the command.
        let info = video_info(&[0xD0, 0x01]).expect("parses");
        assert_eq!(
            Some(info),
            v(
                FrameType::Command,
                VideoCodec::Unspecified,
                VideoPacket::Command
            )
        );
        assert!(!info.is_keyframe() && !info.is_sequence_header());
        assert_eq!(video_info(&[0xD0]), None);
    }

    #[test]
    fn enhanced_hevc_sequence_start() {
        let d = ex(0x90, b"hvc1");
        let info = video_info(&d).expect("parses");
        assert_eq!(
            Some(info),
            v(FrameType::Key, VideoCodec::Hevc, VideoPacket::SequenceStart)
        );
        assert!(info.is_keyframe() && info.is_sequence_header());
        assert!(is_video_sequence_header(&d));
        assert!(!is_video_keyframe(&d));
    }

    #[test]
    fn enhanced_av1_coded_keyframe() {
        let d = ex(0x91, b"av01");
        assert_eq!(
            video_info(&d),
            v(FrameType::Key, VideoCodec::Av1, VideoPacket::CodedFrames)
        );
        assert!(is_video_keyframe(&d));
        assert!(!is_video_sequence_header(&d));
    }

    #[test]
    fn enhanced_coded_frames_x_inter() {
        let d = ex(0xA3, b"hvc1");
        assert_eq!(
            video_info(&d),
            v(
                FrameType::Inter,
                VideoCodec::Hevc,
                VideoPacket::CodedFramesX
            )
        );
        assert!(!is_video_keyframe(&d));
        // The same as a keyframe.
        assert!(is_video_keyframe(&ex(0x93, b"hvc1")));
    }

    #[test]
    fn enhanced_other_packet_types_and_fourccs() {
        assert_eq!(
            video_info(&ex(0x92, b"vp09")),
            v(FrameType::Key, VideoCodec::Vp9, VideoPacket::SequenceEnd)
        );
        assert!(video_info(&ex(0x92, b"vp09")).is_some_and(|i| i.is_end_of_sequence()));
        assert_eq!(
            video_info(&ex(0x90, b"avc1")),
            v(FrameType::Key, VideoCodec::Avc, VideoPacket::SequenceStart)
        );
        assert_eq!(
            video_info(&ex(0xA1, b"vp08")),
            v(
                FrameType::Inter,
                VideoCodec::FourCc(*b"vp08"),
                VideoPacket::CodedFrames
            )
        );
        // MPEG2TSSequenceStart is a sequence header.
        assert!(is_video_sequence_header(&ex(0x95, b"av01")));
        // Metadata: frame type ignored, so neither keyframe nor sequence header.
        let meta = video_info(&ex(0x94, b"hvc1")).expect("parses");
        assert_eq!(meta.packet, VideoPacket::Metadata);
        assert!(!meta.is_keyframe() && !meta.is_sequence_header());
        // Metadata with frame type 5 is still metadata, with its FourCC.
        assert_eq!(
            video_info(&ex(0xD4, b"hvc1")),
            v(FrameType::Command, VideoCodec::Hevc, VideoPacket::Metadata)
        );
    }

    #[test]
    fn enhanced_multitrack_reports_its_inner_packet_type_and_track() {
        // 0x96: key, Multitrack; 0x00: OneTrack, inner SequenceStart; the FourCC; track 0.
        let d = [0x96, 0x00, b'h', b'v', b'c', b'1', 0x00, 1, 2, 3];
        let info = video_info(&d).expect("parses");
        assert_eq!(
            Some(info),
            v(FrameType::Key, VideoCodec::Hevc, VideoPacket::SequenceStart)
        );
        assert!(info.is_sequence_header() && !info.is_coded_keyframe());
        assert_eq!(track_id(&d, true), 0);
        assert_eq!(video_info(&d[..5]), None);
        // ManyTracks (1), inner CodedFrames (1), AV1, track 2 first: a keyframe of track 2.
        let d = [
            0x96, 0x11, b'a', b'v', b'0', b'1', 0x02, 0, 0, 4, 9, 9, 9, 9,
        ];
        assert!(is_video_keyframe(&d) && !is_video_sequence_header(&d));
        assert_eq!(track_id(&d, true), 2);
        // Inter frames of a track are not keyframes; CodedFramesX (3) keyframes are.
        assert!(!is_video_keyframe(&[
            0xA6, 0x01, b'a', b'v', b'0', b'1', 1, 7
        ]));
        assert!(is_video_keyframe(&[
            0x96, 0x03, b'v', b'p', b'0', b'9', 1, 7
        ]));
        // Audio multitrack (SoundFormat 9, packet type 5): the inner SequenceStart of track 3.
        let d = [0x95, 0x00, b'O', b'p', b'u', b's', 0x03, 1];
        assert!(is_audio_sequence_header(&d));
        assert_eq!(track_id(&d, false), 3);
        assert_eq!(track_id(&d, true), 0, "an audio tag read as video");
        assert!(!is_audio_sequence_header(&[
            0x95, 0x01, b'O', b'p', b'u', b's', 3, 1
        ]));
        // Not multitrack: track 0.
        assert_eq!(track_id(&[0x17, 1, 0, 0, 0], true), 0);
        assert_eq!(track_id(&[0xAF, 0, 0x12], false), 0);
        assert_eq!(track_id(&[], true), 0);
    }

    #[test]
    fn av1_and_vp9_keyframes_and_sequence_starts() {
        for fourcc in [b"av01", b"vp09"] {
            let seq = [0x90, fourcc[0], fourcc[1], fourcc[2], fourcc[3], 1];
            let key = [0x91, fourcc[0], fourcc[1], fourcc[2], fourcc[3], 1];
            let inter = [0xA1, fourcc[0], fourcc[1], fourcc[2], fourcc[3], 1];
            assert!(is_video_sequence_header(&seq) && !is_video_keyframe(&seq));
            assert!(is_video_keyframe(&key) && !is_video_sequence_header(&key));
            assert!(!is_video_keyframe(&inter) && !is_video_sequence_header(&inter));
        }
    }

    #[test]
    fn enhanced_mod_ex_prefix_is_skipped() {
        // 0x97: key, ModEx; UI8 2 + 1 = three bytes of nanosecond offset; then
        // modExType 0 | packet type 1 (CodedFrames); then the FourCC.
        let d = [
            0x97, 0x02, 0x00, 0x01, 0x02, 0x01, b'a', b'v', b'0', b'1', 9,
        ];
        assert_eq!(
            video_info(&d),
            v(FrameType::Key, VideoCodec::Av1, VideoPacket::CodedFrames)
        );
        assert!(is_video_keyframe(&d));
        // The 16-bit size form: 0xFF then UI16 + 1 = 2 bytes.
        let d = [
            0x97, 0xFF, 0x00, 0x01, 0xAA, 0xBB, 0x00, b'h', b'v', b'c', b'1',
        ];
        assert!(is_video_sequence_header(&d));
        // Truncated anywhere inside: None.
        for n in 0..d.len() {
            assert_eq!(video_info(&d[..n]), None, "length {n}");
        }
        // Audio too: Opus SequenceStart behind a ModEx.
        let d = [0x97, 0x02, 0, 0, 1, 0x00, b'O', b'p', b'u', b's'];
        assert_eq!(audio_info(&d), a(AudioFormat::FourCc(*b"Opus"), true));
    }

    #[test]
    fn aac() {
        let seq = [0xAF, 0x00, 0x12, 0x10];
        assert_eq!(audio_info(&seq), a(AudioFormat::Aac, true));
        assert!(is_audio_sequence_header(&seq));
        let raw = [0xAF, 0x01, 0x21, 0x00];
        assert_eq!(audio_info(&raw), a(AudioFormat::Aac, false));
        assert!(!is_audio_sequence_header(&raw));
    }

    #[test]
    fn mp3_and_legacy_formats() {
        let d = [0x2F, 0xFF, 0xFB, 0x90];
        assert_eq!(audio_info(&d), a(AudioFormat::Mp3, false));
        assert!(!is_audio_sequence_header(&d));
        assert_eq!(audio_info(&[0x2E]), a(AudioFormat::Mp3, false));
        assert_eq!(audio_info(&[0x72, 0xD5]), a(AudioFormat::Legacy(7), false));
        assert_eq!(audio_info(&[0xB6, 0x00]), a(AudioFormat::Legacy(11), false));
    }

    #[test]
    fn enhanced_audio() {
        // 0x90: SoundFormat 9, AudioPacketType 0 (SequenceStart).
        let d = [0x90, b'O', b'p', b'u', b's', 0x4F, 0x70];
        assert_eq!(audio_info(&d), a(AudioFormat::FourCc(*b"Opus"), true));
        assert!(is_audio_sequence_header(&d));
        let d = [0x91, b'O', b'p', b'u', b's', 0xFC];
        assert_eq!(audio_info(&d), a(AudioFormat::FourCc(*b"Opus"), false));
        for fourcc in [b"fLaC", b"ac-3", b"ec-3", b".mp3", b"mp4a"] {
            let mut d = vec![0x90];
            d.extend_from_slice(fourcc);
            assert_eq!(audio_info(&d), a(AudioFormat::FourCc(*fourcc), true));
            d[0] = 0x92; // SequenceEnd
            assert_eq!(audio_info(&d), a(AudioFormat::FourCc(*fourcc), false));
            d[0] = 0x94; // MultichannelConfig
            assert_eq!(audio_info(&d), a(AudioFormat::FourCc(*fourcc), false));
        }
        // Multitrack: OneTrack | SequenceStart, then the FourCC: a sequence header.
        let d = [0x95, 0x00, b'O', b'p', b'u', b's', 0x00];
        assert_eq!(audio_info(&d), a(AudioFormat::FourCc(*b"Opus"), true));
        assert_eq!(audio_info(&d[..5]), None);
    }

    #[test]
    fn short_inputs() {
        assert_eq!(video_info(&[]), None);
        assert_eq!(audio_info(&[]), None);
        // Legacy AVC/HEVC need the packet type byte.
        assert_eq!(video_info(&[0x17]), None);
        assert_eq!(video_info(&[0x1C]), None);
        // AAC needs the packet type byte.
        assert_eq!(audio_info(&[0xAF]), None);
        // Enhanced needs the whole FourCC.
        for n in 0..5 {
            assert_eq!(
                video_info(&ex(0x90, b"hvc1")[..n]),
                None,
                "video length {n}"
            );
            assert_eq!(
                audio_info(&[0x90, b'O', b'p', b'u', b's'][..n]),
                None,
                "audio length {n}"
            );
        }
        for f in [
            is_video_keyframe,
            is_video_sequence_header,
            is_audio_sequence_header,
        ] {
            assert!(!f(&[]));
            assert!(!f(&[0x17]));
            assert!(!f(&[0xAF]));
            assert!(!f(&[0x90, b'h', b'v']));
        }
    }

    proptest! {
        /// Any bytes: an answer or `None`, never a panic; and the helpers agree with the
        /// info functions.
        #[test]
        fn arbitrary_bytes_never_panic(d in prop::collection::vec(any::<u8>(), 0..300)) {
            let vi = video_info(&d);
            prop_assert_eq!(is_video_keyframe(&d), vi.is_some_and(|i| i.is_coded_keyframe()));
            prop_assert_eq!(
                is_video_sequence_header(&d),
                vi.is_some_and(|i| i.is_sequence_header())
            );
            let ai = audio_info(&d);
            prop_assert_eq!(is_audio_sequence_header(&d), ai.is_some_and(|i| i.is_sequence_header));
            if let Some(i) = vi {
                prop_assert!(!(i.is_keyframe() && i.frame_type == FrameType::Command));
            }
        }
    }
}
