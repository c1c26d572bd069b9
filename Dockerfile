# syntax=docker/dockerfile:1
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /portcullis ./cmd/portcullis

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /portcullis /portcullis
EXPOSE 5000
VOLUME /var/lib/portcullis
ENTRYPOINT ["/portcullis"]
# Listen on all interfaces inside the container; data on the volume.
CMD ["serve", "--listen", ":5000", "--data", "/var/lib/portcullis"]
