# syntax=docker/dockerfile:1
# Multi-stage build of the layer1 engine. The builder compiles librdkafka from the source bundled
# in rdkafka-sys (needs a C toolchain, make, perl); the runtime image holds only the binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends build-essential perl && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The compiled-in holiday calendar (src/calendar includes data/holidays.csv) and the [[bench]]
# targets Cargo.toml declares must be present for the manifest and the build.
COPY data ./data
COPY benches ./benches
RUN cargo build --release --locked --bin layer1

FROM debian:bookworm-slim AS runtime
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /var/lib/layer1 --create-home layer1
COPY --from=build /src/target/release/layer1 /usr/local/bin/layer1
# HOLIDAYS_FILE defaults to data/holidays.csv relative to the working directory: ship it, so the
# engine does not fall back to the compiled-in list with a warning (mount a newer one over it).
COPY --from=build --chown=layer1:layer1 /src/data/holidays.csv /var/lib/layer1/data/holidays.csv
USER layer1
WORKDIR /var/lib/layer1
ENV HTTP_ADDR=127.0.0.1:8080 JOURNAL_DIR=/var/lib/layer1/journal
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s --start-period=20s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/health/ready || exit 1
ENTRYPOINT ["/usr/local/bin/layer1"]
CMD ["run"]
