# pullgate links libyara (cgo): build on Debian 12 with libyara-dev, run on
# Debian 12 with libyara9.
FROM golang:1.26-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libyara-dev libisal-dev pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -o /pullgate ./cmd/pullgate

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libyara9 libisal2 ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /pullgate /usr/local/bin/pullgate
USER 65532:65532
VOLUME /data
EXPOSE 5000
ENTRYPOINT ["pullgate"]
CMD ["serve", "--data-dir", "/data"]
