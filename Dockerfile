# syntax=docker/dockerfile:1
#
# Tandem's container image: one static binary on distroless, as a non-root
# user, with its data in the /data volume.
#
#   docker build --build-arg VERSION=$(git describe --always --dirty) -t tandem .
#   docker run -p 8080:8080 -v tandem-data:/data tandem
#
# `docker stop` sends SIGTERM and waits 10 s before SIGKILL: the image sets
# the server's graceful-shutdown budget below that (TANDEM_SHUTDOWN_TIMEOUT).

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download && go mod verify
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/tandem ./cmd/tandem \
 && mkdir /out/data

# distroless/static: CA certificates, tzdata, /etc/passwd with nonroot
# (65532); no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tandem /tandem
# The volume's mount point, owned by the server's user: a new named volume
# takes this directory's owner, so the server can write to it.
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV TANDEM_ADDR=:8080 \
    TANDEM_DATA_DIR=/data \
    TANDEM_SHUTDOWN_TIMEOUT=8s
VOLUME /data
EXPOSE 8080
# No curl or wget here: the binary checks itself (GET /healthz on the port
# of TANDEM_ADDR, 2 s timeout, exit 0 or 1).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/tandem", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/tandem"]
CMD ["serve"]
