//! Records what an RTMP publisher sends, byte for byte, while answering it with the real
//! server session: the tool that made `tests/data/ffmpeg_publish.bin`.
//!
//! ```sh
//! cargo run --example rtmp_capture -- 127.0.0.1:19350 out.bin
//! ffmpeg ... -f flv rtmp://127.0.0.1:19350/live/capture
//! ```
//!
//! It serves one connection, accepts its publish, writes every byte the client sent
//! (handshake included) to the output file when the client disconnects, and prints the
//! session events to stderr.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Instant;

use bytes::BytesMut;
use ringcast::rtmp::session::server::{Event, Server, ServerConfig};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:19350".into());
    let path = args.next().unwrap_or_else(|| "capture.bin".into());
    let listener = TcpListener::bind(&addr)?;
    eprintln!("listening on {addr}, writing {path}");
    let (mut sock, peer) = listener.accept()?;
    eprintln!("accepted {peer}");
    let start = Instant::now();
    let mut session = Server::new(ServerConfig::default(), 1, 0);
    let mut captured = Vec::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut tmp = vec![0u8; 64 * 1024];
    let mut media = 0usize;
    loop {
        let n = sock.read(&mut tmp)?;
        if n == 0 {
            break;
        }
        captured.extend_from_slice(&tmp[..n]);
        buf.extend_from_slice(&tmp[..n]);
        let now = start.elapsed().as_millis() as u64;
        if let Err(e) = session.handle_input(&mut buf, now) {
            eprintln!("session error: {e}");
            break;
        }
        while let Some(ev) = session.poll_event() {
            match ev {
                Event::PublishRequested { stream_id, .. } => {
                    eprintln!("{ev:?}");
                    session.accept_publish(stream_id);
                }
                Event::Media { .. } => media += 1,
                other => eprintln!("{other:?}"),
            }
        }
        sock.write_all(&session.take_output())?;
    }
    eprintln!("{media} media messages, {} bytes captured", captured.len());
    std::fs::write(&path, &captured)
}
