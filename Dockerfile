# The lake binary in a slim image: `docker build -t lake .`
FROM rust:1.95-bookworm AS build
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake libcurl4-openssl-dev libssl-dev pkg-config >/dev/null
WORKDIR /src
COPY . .
RUN cargo build --release --bin lake

FROM debian:bookworm-slim
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ca-certificates libssl3 libcurl4 >/dev/null && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/lake /usr/local/bin/lake
# Two malloc arenas: the default (eight per core) lets every worker thread keep the memory of the
# file groups it once merged, so `lake compact` peaked at 1.8 GB on a 10M-row table instead of
# 0.8 GB, and ran slower (docs/performance.md, "Peak memory").
ENV MALLOC_ARENA_MAX=2
ENTRYPOINT ["lake"]
