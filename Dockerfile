# diffmart in a container: `docker compose up` (see docker-compose.yml) or
#   docker build -t diffmart . && docker run -p 4566:4566 -e DIFFMART_ROOT_PASSWORD=… diffmart
# Listening on every interface, the server needs a root password (or --insecure).
#
# Build stage: the full Rust image has what the bundled librdkafka build needs
# (a C toolchain, make, perl, python3, zlib headers).
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Everything Cargo's manifest names (crates, tests, benches); .dockerignore keeps target/ and .git out.
COPY . .
RUN cargo build --release --locked --bin diffmart \
 && cp target/release/diffmart /usr/local/bin/diffmart

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates zlib1g \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/diffmart /usr/local/bin/diffmart
# What the server has taken in (its input log): a volume, so it outlives the container.
ENV DIFFMART_DATA_DIR=/var/lib/diffmart
VOLUME /var/lib/diffmart
# Postgres clients and the HTTP API; the server listens on every interface in the container.
EXPOSE 4566 8080
ENTRYPOINT ["diffmart"]
CMD ["--pg-listen", "0.0.0.0:4566", "--http-listen", "0.0.0.0:8080"]
