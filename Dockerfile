# syntax=docker/dockerfile:1
# Build: docker build -t dataroom-operator .   (the chart's image.repository/tag point at the result)

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY src ./src
# benches/ and tests/ only because Cargo.toml declares their targets; they are not built.
COPY benches ./benches
RUN cargo build --release --locked --features aws --bin dataroom-operator

# glibc and CA certificates, no shell, no package manager; runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/dataroom-operator /usr/local/bin/dataroom-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/dataroom-operator"]
CMD ["run"]
