# syntax=docker/dockerfile:1
#
# The understudy sidecar image: one static binary on a distroless base, no shell, non-root.
#
#   docker build -t understudy:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/understudy:0.1.0 --push .
#
# The binary is built by ./build-release, the same command bench/run measures: the release
# profile with glibc linked in statically (`-C target-feature=+crt-static`), so it needs no
# libc at run time and the image carries exactly the benchmarked binary, glibc's allocator
# included (docs/BENCHMARKS.md). Name lookups (/etc/hosts, DNS) work without loading anything
# at run time. TLS is rustls
# with ring (no OpenSSL); the Kubernetes CA comes from the pod's service account, so the image
# needs no CA bundle of its own.

# The toolchain the benchmarks were measured with: its LLVM (22) reads the profile in pgo/, which
# ./build-release optimizes with (an older toolchain builds without it, and says so).
ARG RUST_VERSION=1.95

# === build ===
# Debian's Rust image has gcc and the static glibc (libc6-dev) that ring and the link need.
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep downloaded crates and compiled dependencies between builds; the binary is
# copied out before the target cache is unmounted. --locked builds exactly Cargo.lock.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    dir=$(CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols \
          ./build-release --locked -p understudy-proxy --bin understudy) \
 && cp "$dir/understudy" /understudy

# === run ===
# distroless "static": no shell, no package manager; the :nonroot tag runs as 65532:65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /understudy /usr/local/bin/understudy
USER 65532:65532
# 4040: admin (GET / -> {"name":"<leader>"}, /healthz, /readyz, /metrics); 8080: the proxy,
# when --listen 0.0.0.0:8080 is given.
EXPOSE 4040 8080
ENTRYPOINT ["/usr/local/bin/understudy"]
