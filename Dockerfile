# pullgate links libyara and ISA-L (cgo): build on Debian 12 with their
# -dev packages, run on Debian 12 with the libraries.
FROM golang:1.26-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libyara-dev libisal-dev pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN go build -ldflags "-X main.version=${VERSION}" -o /pullgate ./cmd/pullgate

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libyara9 libisal2 ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /pullgate /usr/local/bin/pullgate
# A named volume takes the ownership of the directory it is mounted on.
RUN mkdir /data && chown 65532:65532 /data
USER 65532:65532
VOLUME /data
EXPOSE 5000
ENTRYPOINT ["pullgate"]
CMD ["serve", "--data-dir", "/data"]
