//! The drive loop of a relay's client session: a socket, the sans-IO [`Client`], and the
//! steps a long-lived relay needs (connect, handshake, `connect` and the start of the play
//! or publish within one deadline; then reading events).
//!
//! Reads in the streaming phase carry no timeout: an io_uring read that is given up takes
//! its buffer (and a partial chunk) with it. A relay stops a connection by shutting its
//! socket down ([`RelayConn::stop`]), which ends the read in flight.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::time::timeout_at;

use super::RtmpUrl;
use crate::rtmp::session::client::{Client, ClientConfig, Event, Intent};
use crate::runtime::{Io, Stream};

/// How much a relay reads at once: it carries a whole stream.
pub const READ_SIZE: usize = 64 * 1024;

/// Why a relay connection could not start or went on no longer.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The address did not resolve or the TCP connect failed.
    #[error("connect to {url}: {source}")]
    Connect {
        /// The peer.
        url: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// The peer did not get as far as it had to within the connect timeout.
    #[error("{url}: timed out while {phase}")]
    Timeout {
        /// The peer.
        url: String,
        /// What it was doing.
        phase: &'static str,
    },
    /// The peer refused (`_error`, an error status such as StreamNotFound or BadName).
    #[error("{url}: refused: {code} ({description})")]
    Refused {
        /// The peer.
        url: String,
        /// The status code.
        code: String,
        /// The peer's description.
        description: String,
    },
    /// The peer's stream ended (StreamEOF, UnpublishNotify) or it closed the connection.
    #[error("{url}: {what}")]
    Ended {
        /// The peer.
        url: String,
        /// What happened.
        what: String,
    },
    /// The peer broke the protocol.
    #[error("{url}: {source}")]
    Protocol {
        /// The peer.
        url: String,
        /// What was wrong.
        source: crate::rtmp::session::Error,
    },
    /// A socket error while streaming.
    #[error("{url}: {source}")]
    Io {
        /// The peer.
        url: String,
        /// The socket error.
        source: std::io::Error,
    },
}

/// One relay connection past its start: the socket and the client session, shared by
/// the relay's reader and writer tasks (never borrowed across an await).
pub struct RelayConn {
    /// The peer, for logs.
    pub url: String,
    /// The socket.
    pub stream: Rc<Stream>,
    /// The client session.
    pub client: Rc<RefCell<Client>>,
    /// What was read but not yet parsed (a partial chunk).
    pub inbuf: BytesMut,
    epoch: Instant,
}

/// What a status code means for a relay.
fn ends_stream(code: &str) -> bool {
    matches!(
        code,
        "NetStream.Play.UnpublishNotify" | "NetStream.Play.Stop" | "NetStream.Play.Complete"
    )
}

impl RelayConn {
    /// Connects to `url`, and plays or publishes as `config` says: returns once the publish
    /// started, or once a play started and its first media or metadata arrived (so an
    /// origin that accepts the play of a stream it does not have counts as not having it).
    /// Everything is bounded by `timeout`. The events that arrived with the start (a play's
    /// first frames) come back with the connection.
    pub async fn open(
        io: Io,
        url: &RtmpUrl,
        config: ClientConfig,
        timeout: Duration,
        seed: u64,
    ) -> Result<(RelayConn, Vec<Event>), RelayError> {
        let deadline = Instant::now() + timeout;
        let name = url.to_string();
        let timed_out = |phase| RelayError::Timeout {
            url: name.clone(),
            phase,
        };
        let connect_err = |source| RelayError::Connect {
            url: name.clone(),
            source,
        };
        let addr = timeout_at(deadline.into(), super::resolve::resolve(&url.authority))
            .await
            .map_err(|_| timed_out("resolving"))?
            .map_err(connect_err)?;
        let stream = timeout_at(deadline.into(), Stream::connect(io, addr))
            .await
            .map_err(|_| timed_out("connecting"))?
            .map_err(connect_err)?;
        let play = matches!(config.intent, Intent::Play(_));
        let mut client = Client::new(config, seed, 0);
        client.start();
        let epoch = Instant::now();
        let mut inbuf = BytesMut::with_capacity(READ_SIZE);
        let mut started = false;
        let mut events = Vec::new();
        loop {
            if client.has_output() {
                let out = client.take_output().freeze();
                timeout_at(deadline.into(), stream.write_all(out))
                    .await
                    .map_err(|_| timed_out("writing"))?
                    .map_err(connect_err)?;
            }
            let phase = if started {
                "waiting for the first media"
            } else {
                "starting"
            };
            let (res, buf) = timeout_at(deadline.into(), stream.read_buf(inbuf, READ_SIZE))
                .await
                .map_err(|_| timed_out(phase))?;
            inbuf = buf;
            match res {
                Ok(0) => {
                    return Err(RelayError::Ended {
                        url: name,
                        what: "closed the connection while starting".into(),
                    });
                }
                Ok(_) => {}
                Err(source) => return Err(connect_err(source)),
            }
            let now_ms = epoch.elapsed().as_millis() as u64;
            client
                .handle_input(&mut inbuf, now_ms)
                .map_err(|source| RelayError::Protocol {
                    url: name.clone(),
                    source,
                })?;
            while let Some(ev) = client.poll_event() {
                match ev {
                    Event::Rejected { code, description } => {
                        return Err(RelayError::Refused {
                            url: name,
                            code,
                            description,
                        });
                    }
                    Event::Status { ref code, .. } if started && ends_stream(code) => {
                        return Err(RelayError::Ended {
                            url: name,
                            what: format!("{code} before any media"),
                        });
                    }
                    Event::StreamEof if started => {
                        return Err(RelayError::Ended {
                            url: name,
                            what: "StreamEOF before any media".into(),
                        });
                    }
                    Event::Publishing { .. } if !play => started = true,
                    Event::Playing { .. } if play => started = true,
                    Event::Media(_) | Event::Metadata { .. } if started => events.push(ev),
                    _ => {}
                }
            }
            let ready = if play {
                events
                    .iter()
                    .any(|e| matches!(e, Event::Media(_) | Event::Metadata { .. }))
            } else {
                started
            };
            if ready {
                // Output the session owes (acknowledgements) goes with the next write.
                let conn = RelayConn {
                    url: name,
                    stream: Rc::new(stream),
                    client: Rc::new(RefCell::new(client)),
                    inbuf,
                    epoch,
                };
                return Ok((conn, events));
            }
        }
    }

    /// The reading half of a connection whose writes another task makes: the same socket
    /// and session, and the bytes read so far.
    pub fn reading(
        url: String,
        stream: Rc<Stream>,
        client: Rc<RefCell<Client>>,
        inbuf: BytesMut,
    ) -> RelayConn {
        RelayConn {
            url,
            stream,
            client,
            inbuf,
            epoch: Instant::now(),
        }
    }

    /// The session clock, ms since the connection started.
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Reads once (no timeout: see the module doc) and returns the events the bytes made.
    /// A stream end (StreamEOF, UnpublishNotify, the connection closing) is an error.
    pub async fn read_events(&mut self) -> Result<Vec<Event>, RelayError> {
        let buf = std::mem::take(&mut self.inbuf);
        let (res, buf) = self.stream.read_buf(buf, READ_SIZE).await;
        self.inbuf = buf;
        match res {
            Ok(0) => {
                return Err(RelayError::Ended {
                    url: self.url.clone(),
                    what: "closed the connection".into(),
                });
            }
            Ok(_) => {}
            Err(source) => {
                return Err(RelayError::Io {
                    url: self.url.clone(),
                    source,
                });
            }
        }
        let now_ms = self.now_ms();
        let mut client = self.client.borrow_mut();
        client
            .handle_input(&mut self.inbuf, now_ms)
            .map_err(|source| RelayError::Protocol {
                url: self.url.clone(),
                source,
            })?;
        let mut events = Vec::new();
        while let Some(ev) = client.poll_event() {
            match &ev {
                Event::StreamEof => {
                    return Err(RelayError::Ended {
                        url: self.url.clone(),
                        what: "StreamEOF".into(),
                    });
                }
                Event::Status { code, .. } if ends_stream(code) => {
                    return Err(RelayError::Ended {
                        url: self.url.clone(),
                        what: code.clone(),
                    });
                }
                Event::Rejected { code, description } => {
                    return Err(RelayError::Refused {
                        url: self.url.clone(),
                        code: code.clone(),
                        description: description.clone(),
                    });
                }
                _ => events.push(ev),
            }
        }
        Ok(events)
    }

    /// Writes what the session owes the peer (acknowledgements, pong), if anything.
    pub async fn flush(&self) -> Result<(), RelayError> {
        let out = {
            let mut c = self.client.borrow_mut();
            if !c.has_output() {
                return Ok(());
            }
            c.take_output().freeze()
        };
        self.stream
            .write_all(out)
            .await
            .map_err(|source| RelayError::Io {
                url: self.url.clone(),
                source,
            })
    }

    /// Ends the connection: a read or write in flight returns.
    pub fn stop(&self) {
        self.stream.shutdown_both();
    }
}
