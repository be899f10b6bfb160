# One image holding every binary of the mesh: the five services and the cpis CLI.
# The Helm chart (charts/cpis) picks the binary with the container command, e.g.
# /usr/local/bin/cpis-identity, and `cpis-<service> migrate` for the migration Jobs.
#
#   docker build -t cpis-mesh:0.1.0 .

# Build: the toolchain the workspace is checked with (STYLE.md). protox compiles the protos
# in Rust, so no protoc; ring and the bundled SQLite need the image's C compiler.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY proto proto
COPY crates crates
COPY services services
RUN cargo build --release --locked \
        -p cpis-identity -p cpis-flag-registry -p cpis-attendance \
        -p cpis-notification -p cpis-audit -p cpis-cli \
    && mkdir -p /out \
    && cp target/release/cpis-identity target/release/cpis-flag-registry \
          target/release/cpis-attendance target/release/cpis-notification \
          target/release/cpis-audit target/release/cpis /out/

# Run: glibc and libgcc only, no shell, the nonroot user (65532) the chart's Pod Security
# settings expect.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
# Service ports (mTLS) and admin ports (plaintext health and /metrics).
EXPOSE 50051 50052 50053 50054 50055 9501 9502 9503 9504 9505
ENTRYPOINT ["/usr/local/bin/cpis"]
