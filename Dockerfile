# syntax=docker/dockerfile:1
# weightfs image: the static binary, fusermount3 and the container
# entrypoint. Run it with /dev/fuse and CAP_SYS_ADMIN, e.g.
#   docker build -t weightfs .
#   docker run --rm --device /dev/fuse --cap-add SYS_ADMIN --security-opt apparmor=unconfined \
#     -v $PWD/examples/sdxl/config.yaml:/app/config.yaml:ro weightfs ls --config /app/config.yaml
# See examples/README.md for the entrypoint, sidecar and build-time recipes.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# What `weightfs --version` prints: docker build --build-arg VERSION="$(git describe --tags --always --dirty)" .
ARG VERSION=dev
# CGO off: one static binary that runs in any image, whatever its libc.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags="-s -w -X main.version=${VERSION}" -o /out/weightfs ./cmd/weightfs

FROM debian:bookworm-slim
# fuse3: fusermount3 for non-root mounts and unmounts; ca-certificates: TLS
# to the Hub, S3 and GCS; curl: the entrypoint's readiness check.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends fuse3 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && echo user_allow_other >> /etc/fuse.conf
COPY --from=build /out/weightfs /usr/local/bin/weightfs
COPY examples/entrypoint.sh /usr/local/bin/weightfs-entrypoint
ENV WEIGHTFS_CACHE_DIR=/var/cache/weightfs
ENTRYPOINT ["weightfs"]
CMD ["--help"]
