# One image for both the init container (`meshtop init`, which needs
# iptables-restore) and the sidecar (`meshtop proxy`).
#
#   docker build -t meshtop:0.1.0 .
#
# Build stage: the release binary, statically linked against nothing but
# glibc (libzstd is vendored).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY demo/proto ./demo/proto
COPY tests/proto ./tests/proto
COPY benches ./benches
RUN cargo build --release --locked --bin meshtop \
 && strip target/release/meshtop

# Run stage: Debian slim with iptables (nft and legacy backends) for
# `meshtop init`; the sidecar itself runs as an unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 1337 --no-create-home --shell /usr/sbin/nologin meshtop
COPY --from=build /src/target/release/meshtop /usr/local/bin/meshtop
RUN ln -s /usr/local/bin/meshtop /usr/local/bin/kubectl-meshtop
USER 1337
ENTRYPOINT ["/usr/local/bin/meshtop"]
CMD ["proxy"]
