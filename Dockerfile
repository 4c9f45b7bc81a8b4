# syntax=docker/dockerfile:1

# --- build ---------------------------------------------------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY src src
COPY migrations migrations
COPY templates templates
COPY benches benches
RUN cargo build --release --locked --bin textdesk

# --- run -----------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /app textdesk \
 && mkdir -p /app /data \
 && chown textdesk /data
WORKDIR /app
COPY --from=build /src/target/release/textdesk /usr/local/bin/textdesk
COPY business.toml /app/business.toml
ENV HOST=0.0.0.0 \
    PORT=8080 \
    BUSINESS_CONFIG=/app/business.toml \
    DATABASE_URL=sqlite:///data/textdesk.db \
    LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8080
USER textdesk
CMD ["textdesk", "serve"]
