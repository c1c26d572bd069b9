# syntax=docker/dockerfile:1
# Portcullis container image: a static binary on distroless, run as the
# non-root user 65532 with /var/lib/portcullis as the only writable place it
# needs (mount a volume there; the root filesystem may be read-only).
#
#   docker build --build-arg VERSION=v1.2.3 --build-arg COMMIT=$(git rev-parse HEAD) \
#     --build-arg CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ) -t registry.example.com/portcullis:v1.2.3 .
#
# test/containerimage builds the binary with this file's `go build` line and
# checks the final stage's assumptions: keep the build one RUN instruction.

FROM --platform=$BUILDPLATFORM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -buildvcs=false -ldflags="-s -w -X main.buildVersion=${VERSION} -X main.buildCommit=${COMMIT}" -o /out/portcullis ./cmd/portcullis
# The data directory must exist in the image, owned by the runtime user, so
# that a fresh volume mounted there (docker, or Kubernetes with fsGroup)
# starts writable.
RUN install -d -m 0700 /out/data

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG COMMIT=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="portcullis" \
      org.opencontainers.image.description="Pull-through OCI registry mirror with a vulnerability scanner and a policy gate" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="https://github.com/portcullis/portcullis" \
      org.opencontainers.image.base.name="gcr.io/distroless/static-debian12:nonroot"
COPY --from=build /out/portcullis /portcullis
COPY --from=build --chown=65532:65532 /out/data /var/lib/portcullis
USER 65532:65532
EXPOSE 5000
VOLUME ["/var/lib/portcullis"]
ENTRYPOINT ["/portcullis"]
# Listen on all interfaces inside the container; data on the volume.
CMD ["serve", "--listen", ":5000", "--data", "/var/lib/portcullis"]
