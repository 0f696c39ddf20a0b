# ringcast in a container: a build stage with the Rust toolchain, then a slim runtime with
# the binary, the example config and a user of its own.
#
#   docker build -t ringcast:0.1.0 .
#   docker run --rm -p 1935:1935 -p 8080:8080 ringcast:0.1.0
#
# io_uring is refused by Docker's default seccomp profile: ringcast then runs on epoll
# (`io = "auto"` says so in its log); `--security-opt seccomp=unconfined` (or a profile that
# allows io_uring_setup/enter/register) gives it io_uring.

FROM rust:1.85-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin ringcast

FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 ringcast \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin ringcast
COPY --from=build /src/target/release/ringcast /usr/local/bin/ringcast
COPY examples/ringcast.toml /etc/ringcast/ringcast.toml
USER 10001:10001
EXPOSE 1935 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=2s CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/ringcast"]
CMD ["--config", "/etc/ringcast/ringcast.toml"]
